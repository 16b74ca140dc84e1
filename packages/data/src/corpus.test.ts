import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from './corpus.js';
import { DataError } from './errors.js';
import { collect, useTempDir } from './temp-files.test-util.js';

const tmp = useTempDir('corpus');

describe('built-in corpora', () => {
  it('sotu: one document per address, 1790 to 2021, in year order', async () => {
    const corpus = await loadCorpus('sotu');
    const docs = await collect(corpus);
    expect(corpus.kind).toBe('builtin');
    expect(corpus.source).toMatch(/^@stdlib\/datasets-sotu@\d/);
    expect(docs.length).toBe(233);
    expect(docs[0]!.id).toBe('1790_george_washington_n');
    expect(docs[0]!.text).toMatch(/^Fellow-Citizens of the Senate and House of Representatives/);
    expect(docs.at(-1)!.id).toBe('2021_joseph_r_biden_d');
    expect(new Set(docs.map((d) => d.id)).size).toBe(233);
    // byteSize is the UTF-8 size of the texts, and positions end there.
    const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d.text), 0);
    expect(corpus.byteSize).toBe(bytes);
    expect(docs.at(-1)!.position).toBe(bytes);
    expect(bytes).toBeGreaterThan(10_000_000);
  });

  it('moby-dick: one document per chapter (with its heading), in book order', async () => {
    const docs = await collect(await loadCorpus('moby-dick'));
    expect(docs.length).toBe(139);
    expect(docs.map((d) => d.id).slice(0, 4)).toEqual(['contents', 'etymology', 'extracts', 'chapter_1']);
    expect(docs[3]!.text).toMatch(/^CHAPTER 1\. Loomings\.\n\nCall me Ishmael\./);
    expect(docs.at(-1)!.id).toBe('epilogue');
  });

  it('fingerprints are stable across loads and differ between corpora', async () => {
    const a = await (await loadCorpus('moby-dick')).fingerprint();
    const b = await (await loadCorpus('moby-dick')).fingerprint();
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b).toBe(a);
    expect(await (await loadCorpus('sotu')).fingerprint()).not.toBe(a);
  });
});

describe('a folder of text files', () => {
  it('one document per text file below it, sorted by path, hidden and non-text files skipped', async () => {
    const root = await tmp.fresh('folder');
    await tmp.write(join(root, 'b.txt'), 'bee');
    await tmp.write(join(root, 'a/z.md'), 'zed');
    await tmp.write(join(root, 'a/Y.TXT'), 'why');
    await tmp.write(join(root, '.hidden.txt'), 'no');
    await tmp.write(join(root, '.git/x.txt'), 'no');
    await tmp.write(join(root, 'image.png'), Uint8Array.from([0x89, 0, 0]));
    await tmp.write(join(root, 'empty.txt'), '');
    const corpus = await loadCorpus(root);
    expect(corpus.kind).toBe('folder');
    const docs = await collect(corpus);
    expect(docs.map((d) => [d.id, d.text])).toEqual([
      ['a/Y.TXT', 'why'],
      ['a/z.md', 'zed'],
      ['b.txt', 'bee'],
    ]);
    expect(corpus.byteSize).toBe(9);
    expect(docs.at(-1)!.position).toBe(9);
  });

  it('fingerprint follows content (and, in stat mode, size and mtime)', async () => {
    const root = await tmp.fresh('fp');
    const file = await tmp.write(join(root, 'a.txt'), 'hello');
    const before = await (await loadCorpus(root)).fingerprint();
    const stat1 = await (await loadCorpus(root, { fingerprint: 'stat' })).fingerprint();
    await tmp.write(join(root, 'a.txt'), 'jello');
    const when = new Date('2020-01-01T00:00:00Z');
    await utimes(file, when, when);
    const after = await (await loadCorpus(root)).fingerprint();
    expect(after).not.toBe(before);
    expect(await (await loadCorpus(root)).fingerprint()).toBe(after);
    const stat2 = await (await loadCorpus(root, { fingerprint: 'stat' })).fingerprint();
    expect(stat2).not.toBe(stat1);
    // Renaming a file changes the corpus too.
    await tmp.write(join(root, 'b.txt'), 'more');
    expect(await (await loadCorpus(root)).fingerprint()).not.toBe(after);
  });

  it('an empty folder, or one without text files, is an empty corpus', async () => {
    const root = await tmp.fresh('empty');
    await expect(loadCorpus(root)).rejects.toThrow(`${root}: empty corpus: no .txt / .text / .md files in the folder`);
    await tmp.write(join(root, 'x.txt'), '');
    await expect(loadCorpus(root)).rejects.toThrow(/empty corpus: all text files in the folder have 0 bytes/);
  });

  it('a binary file in the folder is named in the error', async () => {
    const root = await tmp.fresh('bin');
    await tmp.write(join(root, 'a.txt'), 'fine');
    const bad = await tmp.write(join(root, 'b.txt'), Uint8Array.from([0x61, 0xff, 0x62]));
    await expect(collect(await loadCorpus(root))).rejects.toThrow(`${bad}: not UTF-8 text: invalid byte sequence at byte 1 (line 1)`);
  });

  it('a file over maxDocumentBytes is refused with its size', async () => {
    const root = await tmp.fresh('big');
    const big = await tmp.write(join(root, 'big.txt'), 'x'.repeat(100));
    await expect(collect(await loadCorpus(root, { maxDocumentBytes: 50 }))).rejects.toThrow(
      new RegExp(`^${big}: file of 100 bytes is over maxDocumentBytes \\(50\\)`),
    );
  });
});

describe('a plain text file', () => {
  it('is cut at blank lines into documents of at least sectionChars, together the whole file', async () => {
    const paras = Array.from({ length: 40 }, (_, i) => `Paragraph ${i}.\nIt has two lines.`);
    const text = paras.join('\n\n') + '\n';
    const path = await tmp.write('book.txt', text);
    const corpus = await loadCorpus(path, { sectionChars: 100 });
    expect(corpus.kind).toBe('text');
    expect(corpus.name).toBe('book.txt');
    const docs = await collect(corpus);
    expect(docs.map((d) => d.text).join('')).toBe(text);
    expect(docs.length).toBeGreaterThan(5);
    for (const d of docs.slice(0, -1)) expect(d.text.length).toBeGreaterThanOrEqual(100);
    expect(docs[0]!.id).toBe('book.txt:1');
    expect(docs[1]!.id).toBe(`book.txt:${docs[0]!.text.split('\n').length}`);
  });

  it('the cut options are part of the fingerprint', async () => {
    const path = await tmp.write('cuts.txt', 'a\n\nb\n');
    const a = await (await loadCorpus(path, { sectionChars: 100 })).fingerprint();
    const b = await (await loadCorpus(path, { sectionChars: 200 })).fingerprint();
    expect(a).not.toBe(b);
  });

  it('a 0-byte file is an empty corpus; a binary file is not text', async () => {
    const empty = await tmp.write('empty.txt', '');
    await expect(loadCorpus(empty)).rejects.toThrow(`${empty}: empty corpus: the file has 0 bytes`);
    const bin = await tmp.write('data.bin', Uint8Array.from([1, 2, 0, 3]));
    await expect(collect(await loadCorpus(bin))).rejects.toThrow(`${bin}: not UTF-8 text: NUL byte (binary file?) at byte 2 (line 1)`);
  });
});

describe('a JSONL file', () => {
  it('one document per non-blank line, from the text field', async () => {
    const path = await tmp.write(
      'docs.jsonl',
      ['{"text": "first", "id": 7}', '', '   ', '{"text": "sec\\nond \\ud83d\\ude00"}', '{"text": ""}', '{"text": "lone \\ud800"}'].join('\r\n'),
    );
    const corpus = await loadCorpus(path);
    expect(corpus.kind).toBe('jsonl');
    const docs = await collect(corpus);
    expect(docs.map((d) => [d.id, d.text])).toEqual([
      ['docs.jsonl:1', 'first'],
      ['docs.jsonl:4', 'second 😀'.replace('second', 'sec\nond')],
      ['docs.jsonl:6', 'lone \uFFFD'],
    ]);
  });

  it('a custom text field', async () => {
    const path = await tmp.write('custom.ndjson', '{"body": "b1"}\n{"body": "b2"}\n');
    expect((await collect(await loadCorpus(path, { textField: 'body' }))).map((d) => d.text)).toEqual(['b1', 'b2']);
  });

  it('a line that is not JSON names the file and line', async () => {
    const path = await tmp.write('bad.jsonl', '{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n');
    const err = await collect(await loadCorpus(path)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).file).toBe(path);
    expect((err as DataError).line).toBe(3);
    expect((err as Error).message).toMatch(new RegExp(`^${path}:3: not valid JSON \\(.+\\): "\\{\\\\"text\\\\": oops\\}"$`));
  });

  it('a line without a string text field names the file and line', async () => {
    const badLines = ['{"txt": "typo"}', '{"text": 42}', '["text"]', 'null', '"just a string"'];
    for (const [i, line] of badLines.entries()) {
      const path = await tmp.write(`missing-${i}.jsonl`, `{"text": "fine"}\n\n${line}\n`);
      await expect(collect(await loadCorpus(path))).rejects.toThrow(
        `${path}:3: expected a JSON object with a string field "text", got ${JSON.stringify(line)}`,
      );
    }
  });
});

describe('bad specs', () => {
  it('a missing path is one clear error', async () => {
    const missing = join(tmp.path, 'nowhere.jsonl');
    await expect(loadCorpus(missing)).rejects.toThrow(
      `${missing}: corpus not found: ${JSON.stringify(missing)} is neither a built-in corpus (sotu, moby-dick) nor an existing file or folder`,
    );
    await expect(loadCorpus('')).rejects.toThrow(DataError);
  });

  it('bad options name the option and value', async () => {
    await expect(loadCorpus('sotu', { sectionChars: 0 })).rejects.toThrow('corpus option sectionChars must be an integer >= 1, got 0');
    await expect(loadCorpus('sotu', { sectionChars: 100, maxSectionChars: 50 })).rejects.toThrow(/maxSectionChars \(50\) must be >= sectionChars \(100\)/);
    await expect(loadCorpus('sotu', { fingerprint: 'mtime' as 'stat' })).rejects.toThrow(/fingerprint must be 'content' or 'stat', got "mtime"/);
  });
});

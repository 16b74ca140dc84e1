import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError } from './errors.js';
import { firstInvalidUtf8, incompleteUtf8Tail, readLines, readSections, readTextChunks } from './text-reader.js';

let dir: string;
let counter = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'peer-data-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fileWith(content: string | Uint8Array): Promise<string> {
  const path = join(dir, `f${counter++}.txt`);
  await writeFile(path, content);
  return path;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const unicodeText = fc.string({ unit: 'binary', maxLength: 400 });

describe('UTF-8 validation', () => {
  it('firstInvalidUtf8 agrees with a fatal TextDecoder on arbitrary bytes', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      // Mostly valid text with a few bytes flipped: exercises truncations, overlongs, surrogates.
      fc.tuple(unicodeText, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 })).map(([s, flips]) => {
        const b = new TextEncoder().encode(s);
        for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
        return b;
      }),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        let valid = true;
        try {
          new TextDecoder('utf-8', { fatal: true }).decode(b);
        } catch {
          valid = false;
        }
        const bad = firstInvalidUtf8(b);
        expect(bad === -1).toBe(valid);
        // Everything before the reported offset is valid on its own.
        if (bad >= 0) expect(() => new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, bad))).not.toThrow();
      }),
      { numRuns: 1000 },
    );
  });

  it('incompleteUtf8Tail finds a cut character at the end', () => {
    const euro = [0xe2, 0x82, 0xac];
    expect(incompleteUtf8Tail(Uint8Array.from([0x41, ...euro]))).toBe(0);
    expect(incompleteUtf8Tail(Uint8Array.from([0x41, 0xe2, 0x82]))).toBe(2);
    expect(incompleteUtf8Tail(Uint8Array.from([0x41, 0xe2]))).toBe(1);
    expect(incompleteUtf8Tail(Uint8Array.from([0xf0, 0x9f, 0x98]))).toBe(3);
    expect(incompleteUtf8Tail(Uint8Array.from([0xf0, 0x9f, 0x98, 0x80]))).toBe(0);
    expect(incompleteUtf8Tail(new Uint8Array(0))).toBe(0);
  });
});

describe('readTextChunks', () => {
  it('reassembles any text exactly whatever the chunk size', async () => {
    await fc.assert(
      fc.asyncProperty(unicodeText.filter((s) => !s.includes('\0') && !s.startsWith('\uFEFF')), fc.integer({ min: 1, max: 16 }), async (s, chunk) => {
        const path = await fileWith(s);
        const chunks = await collect(readTextChunks(path, chunk));
        expect(chunks.map((c) => c.text).join('')).toBe(s);
        const positions = chunks.map((c) => c.position);
        expect(positions).toEqual([...positions].sort((a, b) => a - b));
        if (s.length > 0) expect(positions.at(-1)).toBe(Buffer.byteLength(s));
      }),
      { numRuns: 60 },
    );
  });

  it('drops a leading byte-order mark only', async () => {
    const path = await fileWith('\uFEFFab\uFEFFc');
    expect((await collect(readTextChunks(path, 2))).map((c) => c.text).join('')).toBe('ab\uFEFFc');
  });

  it('names the file, byte offset and line of invalid UTF-8', async () => {
    const path = await fileWith(Uint8Array.from([...Buffer.from('ok\nline two \u00e9\n'), 0xc3, 0x28, 0x41]));
    const err = await collect(readTextChunks(path, 4)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).file).toBe(path);
    expect((err as Error).message).toBe(`${path}: not UTF-8 text: invalid byte sequence at byte 15 (line 3)`);
  });

  it('rejects NUL bytes (binary files)', async () => {
    const path = await fileWith(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]));
    await expect(collect(readTextChunks(path))).rejects.toThrow(`${path}: not UTF-8 text: invalid byte sequence at byte 0 (line 1)`);
    const nul = await fileWith('abc\n\0def');
    await expect(collect(readTextChunks(nul))).rejects.toThrow(`${nul}: not UTF-8 text: NUL byte (binary file?) at byte 4 (line 2)`);
  });

  it('rejects a file ending inside a character', async () => {
    const path = await fileWith(Uint8Array.from([0x61, 0xe2, 0x82]));
    await expect(collect(readTextChunks(path))).rejects.toThrow(/invalid byte sequence at byte 1 \(line 1\)/);
  });

  it('a missing file is a DataError naming it', async () => {
    await expect(collect(readTextChunks(join(dir, 'nope.txt')))).rejects.toThrow(DataError);
  });
});

describe('readLines', () => {
  it('splits on \\n and \\r\\n with 1-based numbers, across chunk boundaries', async () => {
    const path = await fileWith('a\r\nbé\n\nlast');
    const lines = await collect(readLines(path, 100, 3));
    expect(lines.map((l) => [l.text, l.number])).toEqual([
      ['a', 1],
      ['bé', 2],
      ['', 3],
      ['last', 4],
    ]);
  });

  it('matches String.split on random text', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => s.replace(/[\r\n\0]/g, '')), { maxLength: 12 }), fc.integer({ min: 1, max: 9 }), async (parts, chunk) => {
        const text = parts.join('\n').replace(/^\uFEFF/, '');
        const path = await fileWith(text);
        const lines = (await collect(readLines(path, 1000, chunk))).map((l) => l.text);
        const reference = text.length === 0 ? [] : text.split('\n');
        if (reference.at(-1) === '') reference.pop();
        expect(lines).toEqual(reference);
      }),
      { numRuns: 60 },
    );
  });

  it('refuses a line over the limit with its number', async () => {
    const path = await fileWith(`short\n${'x'.repeat(50)}\n`);
    await expect(collect(readLines(path, 20, 8))).rejects.toThrow(`${path}:2: line longer than 20 characters`);
  });
});

describe('readSections', () => {
  const paragraphs = fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).map((s) => s.replace(/[\r\n\0]/g, '') || 'x'), {
    minLength: 1,
    maxLength: 40,
  });

  it('slices concatenate to the whole text, cut after blank lines, at least minChars long', async () => {
    await fc.assert(
      fc.asyncProperty(paragraphs, fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 7 }), async (paras, minChars, chunk) => {
        const text = paras.join('\n\n').replace(/^\uFEFF/, '');
        const path = await fileWith(text);
        const sections = await collect(readSections(path, minChars, 100_000, chunk));
        expect(sections.map((s) => s.text).join('')).toBe(text);
        sections.forEach((s, i) => {
          if (i < sections.length - 1) {
            expect(s.text.length).toBeGreaterThanOrEqual(minChars);
            expect(s.text.endsWith('\n\n')).toBe(true);
          }
          // The line each section starts on, checked against the text before it.
          const before = sections.slice(0, i).map((x) => x.text).join('');
          expect(s.line).toBe(before.split('\n').length);
        });
        // The cut points do not depend on how the file was chunked.
        const whole = await collect(readSections(path, minChars, 100_000));
        expect(whole.map((s) => s.text)).toEqual(sections.map((s) => s.text));
      }),
      { numRuns: 60 },
    );
  });

  it('keeps a blank-line run whole when its whitespace-only lines straddle a chunk boundary', async () => {
    // Found by the property above: one-byte chunks cut after the first '\n\n', the whole file did not.
    const path = await fileWith(' \n\n \n\n x');
    for (const chunk of [1, 2, 3, 4, 100]) {
      const sections = await collect(readSections(path, 1, 100_000, chunk));
      expect(sections.map((s) => s.text)).toEqual([' \n\n \n\n', ' x']);
    }
  });

  it('cuts text without blank lines at a newline, or between characters, before maxChars', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => `line ${i} ${'ab'.repeat(i % 5)}`).join('\n');
    const path = await fileWith(lines);
    const sections = await collect(readSections(path, 10, 40, 16));
    expect(sections.map((s) => s.text).join('')).toBe(lines);
    for (const s of sections.slice(0, -1)) {
      expect(s.text.length).toBeLessThanOrEqual(40);
      expect(s.text.endsWith('\n')).toBe(true);
    }
    // One long line of astral characters: cuts fall between characters, never inside a pair.
    const emoji = '😀'.repeat(50);
    const epath = await fileWith(emoji);
    const cut = await collect(readSections(epath, 5, 9, 7));
    expect(cut.map((s) => s.text).join('')).toBe(emoji);
    for (const s of cut) expect(s.text).toMatch(/^(\uD83D\uDE00)+$/);
  });
});

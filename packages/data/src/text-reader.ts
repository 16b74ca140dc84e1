// Reads a file (plain, or gzip-compressed by its `.gz` suffix) as UTF-8 text in bounded chunks,
// rejecting what is not text: invalid UTF-8 or NUL bytes (binary files). Memory stays at about one
// chunk however large the file is. On top of the chunks: lines (for JSONL) and blank-line sections
// (for plain text files).
import { openByteReader } from './byte-reader.js';
import { DataError } from './errors.js';

export const DEFAULT_CHUNK_BYTES = 1 << 20;

export interface TextChunk {
  text: string;
  /** Bytes of the file consumed so far (compressed bytes for `.gz`; monotone; equals the file size at the end). */
  position: number;
}

/**
 * Index of the first byte that does not start a valid UTF-8 sequence (overlong forms, surrogates and
 * code points above U+10FFFF are invalid, as are truncated sequences), or -1 when all is valid.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let len: number;
    let min: number;
    let cp: number;
    if ((lead & 0xe0) === 0xc0) [len, min, cp] = [2, 0x80, lead & 0x1f];
    else if ((lead & 0xf0) === 0xe0) [len, min, cp] = [3, 0x800, lead & 0x0f];
    else if ((lead & 0xf8) === 0xf0) [len, min, cp] = [4, 0x10000, lead & 0x07];
    else return i;
    if (i + len > n) return i;
    for (let k = 1; k < len; k++) {
      const cont = bytes[i + k]!;
      if ((cont & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return -1;
}

/** Length of an incomplete multi-byte sequence at the end of `bytes` (0 to 3), to carry to the next chunk. */
export function incompleteUtf8Tail(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= Math.min(3, n); back++) {
    const b = bytes[n - back]!;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return len > back ? back : 0;
  }
  return 0;
}

function countNewlines(bytes: Uint8Array, end: number): number {
  let lines = 0;
  for (let i = 0; i < end; i++) if (bytes[i] === 0x0a) lines++;
  return lines;
}

/**
 * The file's text in chunks of about `chunkBytes`, never splitting a character. A leading byte-order
 * mark is dropped. Throws a DataError naming the file, byte offset (in the decompressed text, for
 * `.gz`) and line of the first invalid UTF-8 sequence or NUL byte, or the compressed offset of
 * corrupt gzip data.
 */
export async function* readTextChunks(file: string, chunkBytes = DEFAULT_CHUNK_BYTES): AsyncGenerator<TextChunk> {
  const reader = await openByteReader(file);
  const where = reader.compressed ? ' of the decompressed text' : '';
  // Each piece is decoded on its own (no streaming state), so a BOM must not be stripped mid-file.
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const buffer = new Uint8Array(chunkBytes + 3);
  let carry = 0; // bytes of an incomplete character kept at the start of `buffer`
  let offset = 0; // text offset of buffer[0]
  let newlinesBefore = 0; // newlines before buffer[0], for error line numbers
  let first = true;
  try {
    for (;;) {
      // A gzip reader hands out one inflated piece at a time: fill the chunk.
      let bytesRead = 0;
      for (;;) {
        const n = await reader.read(buffer, carry + bytesRead, chunkBytes - bytesRead);
        bytesRead += n;
        if (n === 0 || bytesRead === chunkBytes) break;
      }
      const end = carry + bytesRead;
      const atEof = bytesRead === 0;
      const view = buffer.subarray(0, end);
      const nul = view.indexOf(0);
      const fail = (at: number, what: string): never => {
        throw new DataError(
          `not UTF-8 text: ${what} at byte ${offset + at}${where} (line ${newlinesBefore + countNewlines(view, at) + 1})`,
          { file },
        );
      };
      const tail = atEof ? 0 : incompleteUtf8Tail(view);
      const whole = view.subarray(0, end - tail);
      let text = '';
      let bad = -1;
      try {
        text = decoder.decode(whole);
      } catch {
        bad = Math.max(0, firstInvalidUtf8(whole));
      }
      // Report whichever comes first.
      if (nul >= 0 && (bad < 0 || nul < bad)) fail(nul, 'NUL byte (binary file?)');
      if (bad >= 0) fail(bad, 'invalid byte sequence');
      if (whole.length > 0) {
        if (first && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        first = false;
      }
      offset += whole.length;
      newlinesBefore += countNewlines(whole, whole.length);
      if (text.length > 0) yield { text, position: reader.consumed };
      if (atEof) return;
      buffer.copyWithin(0, end - tail, end);
      carry = tail;
    }
  } finally {
    await reader.close();
  }
}

export interface TextLine {
  text: string;
  /** 1-based line number. */
  number: number;
  /** Bytes of the file consumed when this line was produced (chunk granularity). */
  position: number;
}

/** Lines without their terminator (`\n` or `\r\n`); at most `maxLineChars` characters each. */
export async function* readLines(file: string, maxLineChars: number, chunkBytes = DEFAULT_CHUNK_BYTES): AsyncGenerator<TextLine> {
  let partial = '';
  let number = 0;
  let position = 0;
  const strip = (line: string): string => (line.endsWith('\r') ? line.slice(0, -1) : line);
  for await (const chunk of readTextChunks(file, chunkBytes)) {
    position = chunk.position;
    let start = 0;
    const text = chunk.text;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const line = partial + text.slice(start, nl);
      partial = '';
      number++;
      if (line.length > maxLineChars) throw new DataError(`line longer than ${maxLineChars} characters`, { file, line: number });
      yield { text: strip(line), number, position };
      start = nl + 1;
    }
    partial += text.slice(start);
    if (partial.length > maxLineChars) throw new DataError(`line longer than ${maxLineChars} characters`, { file, line: number + 1 });
  }
  if (partial.length > 0) yield { text: strip(partial), number: number + 1, position };
}

export interface TextSection {
  text: string;
  /** Bytes of the file consumed when this section was produced (chunk granularity). */
  position: number;
  /** 1-based line on which the section starts. */
  line: number;
}

// A blank line: a newline, then only spaces/tabs/CR, then a newline; runs of them count as one.
const BLANK_LINES = /\n(?:[ \t\r]*\n)+/g;

/**
 * Consecutive slices of the file's text that together are exactly the whole text. A slice ends after
 * a run of blank lines once it holds at least `minChars` characters; with no blank line in sight it
 * ends at the last newline (or anywhere, between characters) before `maxChars`.
 */
export async function* readSections(
  file: string,
  minChars: number,
  maxChars: number,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): AsyncGenerator<TextSection> {
  let pending = '';
  let line = 1;
  let position = 0;
  const take = (cut: number): TextSection => {
    const text = pending.slice(0, cut);
    pending = pending.slice(cut);
    const section = { text, position, line };
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) line++;
    return section;
  };
  // The end of the first blank-line run at or after minChars that is followed by more text, or -1.
  // A run followed only by spaces and tabs up to the end of `pending` may continue in the next chunk
  // (a whitespace-only line is blank), so it is not final yet: cut points must not depend on chunking.
  const closedAt = (end: number): boolean => {
    for (let i = end; i < pending.length; i++) {
      const c = pending.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return true;
    }
    return false;
  };
  const boundary = (): number => {
    BLANK_LINES.lastIndex = Math.max(0, minChars - 1);
    for (let m = BLANK_LINES.exec(pending); m; m = BLANK_LINES.exec(pending)) {
      const end = m.index + m[0].length;
      if (closedAt(end)) return end;
    }
    return -1;
  };
  const forcedCut = (): number => {
    const nl = pending.lastIndexOf('\n', maxChars - 1);
    if (nl >= minChars) return nl + 1;
    // Never between the two halves of a surrogate pair.
    const code = pending.charCodeAt(maxChars - 1);
    return code >= 0xd800 && code <= 0xdbff ? maxChars - 1 : maxChars;
  };
  for await (const chunk of readTextChunks(file, chunkBytes)) {
    pending += chunk.text;
    position = chunk.position;
    while (pending.length >= minChars) {
      const cut = boundary();
      if (cut > 0 && cut <= maxChars) yield take(cut);
      else if (pending.length > maxChars) yield take(forcedCut());
      else break;
    }
  }
  if (pending.length > 0) yield take(pending.length);
}

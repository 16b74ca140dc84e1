// The committed corpus fixtures (test-fixtures/, written by make-fixtures.sh with `gzip` and
// parquet-wasm) and the reference reading of their documents: docs.jsonl parsed line by line with
// plain JSON.parse, independently of the readers under test.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const FIXTURES = resolve(import.meta.dirname, '..', 'test-fixtures');

export const fixture = (name: string): string => join(FIXTURES, name);

export interface ReferenceDocument {
  /** 1-based line of docs.jsonl (= 1-based row of the Parquet fixtures). */
  line: number;
  text: string;
}

/** The non-empty texts of docs.jsonl with their line numbers. */
export function referenceDocuments(): ReferenceDocument[] {
  const lines = readFileSync(fixture('docs.jsonl'), 'utf8').split('\n');
  const out: ReferenceDocument[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const { text } = JSON.parse(line) as { text: string };
    if (text.length > 0) out.push({ line: i + 1, text });
  });
  return out;
}

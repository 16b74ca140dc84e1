/* global process, console */
// Part of make-fixtures.sh (run that): the fixture documents, as JSONL and plain text, and the same
// texts as Parquet files written by parquet-wasm.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.env.TOOLS, 'node_modules'));
const arrow = require('apache-arrow');
const pq = require('parquet-wasm');

// 45 documents: ASCII, accents, CJK, emoji (surrogate pairs), quotes and escapes, one empty text
// (skipped by the readers), and one long document.
const words = ['peer', 'expert', 'retrieval', 'product', 'keys', 'café', 'naïve', '東京', '数据', '🙂', '"quoted"', 'tab\there', 'back\\slash'];
const texts = [];
let state = 12345;
const next = () => (state = (state * 1103515245 + 12345) % 2147483648);
for (let i = 0; i < 45; i++) {
  if (i === 7) {
    texts.push('');
    continue;
  }
  const n = i === 30 ? 4000 : 5 + (next() % 60);
  const parts = [];
  for (let k = 0; k < n; k++) parts.push(words[next() % words.length]);
  texts.push(`Document ${i}: ${parts.join(' ')}.`);
}
writeFileSync('docs.jsonl', texts.map((text, i) => JSON.stringify({ id: i, url: `https://example.org/${i}`, text })).join('\n') + '\n');
writeFileSync('docs.txt', texts.filter((t) => t.length > 0).join('\n\n') + '\n');

function parquet(file, columns, { compression = pq.Compression.SNAPPY, rowGroupSize = 10 } = {}) {
  const table = arrow.tableFromArrays(columns);
  const props = new pq.WriterPropertiesBuilder().setCompression(compression).setMaxRowGroupSize(rowGroupSize).build();
  const bytes = pq.writeParquet(pq.Table.fromIPCStream(arrow.tableToIPC(table, 'stream')), props);
  writeFileSync(file, bytes);
  return bytes;
}

const ids = Int32Array.from(texts.map((_, i) => i));
const urls = texts.map((_, i) => `https://example.org/${i}`);
// Row groups of 10 rows: 5 groups, read one at a time.
const snappy = parquet('docs.parquet', { id: ids, url: urls, text: texts });
parquet('docs.zstd.parquet', { id: ids, text: texts }, { compression: pq.Compression.ZSTD });
parquet('docs.gzip.parquet', { id: ids, text: texts }, { compression: pq.Compression.GZIP });
parquet('content.parquet', { id: ids, content: texts });
// A null text in row 4 (1-based).
const withNull = arrow.vectorFromArray(texts.slice(0, 6).map((t, i) => (i === 3 ? null : t)), new arrow.Utf8());
parquet('null-text.parquet', { id: Int32Array.from([0, 1, 2, 3, 4, 5]), text: withNull });
// Damaged copies: the footer cut off, and the third row group's text column overwritten.
writeFileSync('truncated.parquet', snappy.subarray(0, snappy.length - 100));
const damaged = Uint8Array.from(snappy);
// The column chunks lie in file order; the middle of the file is inside the data of a middle group.
const mid = Math.floor(damaged.length / 2);
damaged.fill(0xff, mid, mid + 64);
writeFileSync('corrupt.parquet', damaged);
console.log(`docs: ${texts.length} texts; docs.parquet ${snappy.length} bytes`);

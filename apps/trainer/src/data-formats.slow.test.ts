// peer-train on the corpus formats of @peer/data through the built CLI: a Parquet file with its text
// in another column (--text-field), a quoted glob of gzip-compressed JSONL shards and the plain JSONL
// hold the same documents, so the runs see the same splits and end with the same validation loss.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from './cli-process.test-util.js';

const FIXTURES = join(import.meta.dirname, '..', '..', '..', 'packages', 'data', 'test-fixtures');
let dir: string;

beforeAll(() => {
  dir = tempDir();
});

async function trainOn(out: string, ...data: string[]): Promise<{ valLoss: number; config: { data: Record<string, unknown> } }> {
  const r = await runCli(['train', '--preset', 'tiny', '--steps', '3', '--out', join(dir, out), '--set', `data.cacheDir=${join(dir, 'cache')}`, ...data], {
    cwd: dir,
  });
  expect(r.code, r.stderr).toBe(0);
  const summary = JSON.parse(readFileSync(join(dir, out, 'summary.json'), 'utf8')) as { val_loss: number };
  const record = JSON.parse(readFileSync(join(dir, out, 'config.json'), 'utf8')) as { config: { data: Record<string, unknown> } };
  return { valLoss: summary.val_loss, config: record.config };
}

describe('peer-train --data formats', () => {
  it('Parquet with --text-field, a glob of .json.gz shards and plain JSONL train alike', async () => {
    const parquet = await trainOn('parquet', '--data', join(FIXTURES, 'content.parquet'), '--text-field', 'content');
    expect(parquet.config.data).toMatchObject({ corpus: join(FIXTURES, 'content.parquet'), textField: 'content' });
    const shards = await trainOn('shards', '--data', join(FIXTURES, 'shards/en/c4-train.0000*-of-00003.json.gz'));
    expect(shards.config.data.textField).toBeUndefined();
    const jsonl = await trainOn('jsonl', '--data', join(FIXTURES, 'docs.jsonl'));
    expect(Number.isFinite(jsonl.valLoss)).toBe(true);
    expect(parquet.valLoss).toBe(jsonl.valLoss);
    expect(shards.valLoss).toBe(jsonl.valLoss);
  });
});

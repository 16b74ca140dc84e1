import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readScalars } from '../tensorboard/event-file.js';
import { scalarsOf, TensorBoardLog } from './tensorboard-log.js';

describe('TensorBoard scalars of metrics records', () => {
  it('maps train, eval and health records to tags, leaving out null and non-finite fields', () => {
    expect(scalarsOf({ kind: 'train', step: 5, tokens: 640, loss: 5.5, aux_loss: 0.01, lr: 1e-3, grad_norm: 2, tokens_per_s: 1000, mfu: null, train_seconds: 3 })).toEqual([
      { tag: 'train/loss', value: 5.5 },
      { tag: 'train/aux_loss', value: 0.01 },
      { tag: 'train/lr', value: 1e-3 },
      { tag: 'train/grad_norm', value: 2 },
      { tag: 'perf/tokens_per_s', value: 1000 },
    ]);
    expect(scalarsOf({ kind: 'eval', step: 10, tokens: 1280, val_loss: 4, val_ppl: Math.exp(4), val_bpb: 1.5 })).toEqual([
      { tag: 'val/loss', value: 4 },
      { tag: 'val/perplexity', value: Math.exp(4) },
      { tag: 'val/bits_per_byte', value: 1.5 },
    ]);
    expect(scalarsOf({ kind: 'health', step: 10, since_step: 0, block: 2, layer: 'peer', experts: 256, usage: 0.75, unevenness: null, dead: 64, head_overlap: 0.01, retrievals: 9 })).toEqual([
      { tag: 'experts/block2/usage', value: 0.75 },
      { tag: 'experts/block2/dead', value: 64 },
      { tag: 'experts/block2/head_overlap', value: 0.01 },
    ]);
  });

  it('writes one event per record that reads back as the same numbers (float32)', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'peer-tblog-')), 'tb');
    const log = new TensorBoardLog(dir);
    log.write({ kind: 'train', step: 1, loss: 3.25, lr: 0.1 });
    log.write({ kind: 'eval', step: 1, val_loss: 3.5 });
    log.write({ kind: 'health', step: 1, block: 0, usage: 1 / 3 });
    log.close();
    const scalars = readScalars(dir);
    expect(Object.fromEntries(scalars)).toEqual({
      'train/loss': [[1, 3.25]],
      'train/lr': [[1, Math.fround(0.1)]],
      'val/loss': [[1, 3.5]],
      'experts/block0/usage': [[1, Math.fround(1 / 3)]],
    });
  });
});

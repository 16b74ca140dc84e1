import { saveCheckpoint } from '@peer/expert-store';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { tempDir } from '../cli-process.test-util.js';
import { layerConfigMessage } from './build-model.js';
import { configHash, readCheckpoint, writeCheckpoint, type TrainerState } from './checkpoint.js';

const state = (hash: string): TrainerState => ({
  version: 1,
  step: 7,
  tokens: 896,
  batcher: { version: 1, numTokens: 100, batchSize: 2, seqLen: 4, seed: 1, shuffle: true, epoch: 0, batchInEpoch: 3, step: 7, epochRng: [1, 2, 3, 4] },
  trainSeconds: 1.5,
  wallSeconds: 2,
  configHash: hash,
});

describe('checkpoints', () => {
  it('hashes configs independently of key order, and differently for any changed value', () => {
    expect(configHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(configHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    expect(configHash({ a: 1, b: { c: [1, 2] } })).not.toBe(configHash({ a: 1, b: { c: [2, 1] } }));
    expect(configHash({ a: 1 })).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('round-trips arrays and the trainer state, and refuses another config', () => {
    const dir = join(tempDir(), 'checkpoint');
    const weights = { name: 'w', dtype: 'F32' as const, shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) };
    writeCheckpoint(dir, [weights], state('sha256:abc'));
    const ckpt = readCheckpoint(dir, 'sha256:abc');
    expect(ckpt.state).toEqual(state('sha256:abc'));
    expect(Array.from(ckpt.get('w')!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(() => readCheckpoint(dir, 'sha256:def')).toThrow(UsageError);
    expect(() => readCheckpoint(dir, 'sha256:def')).toThrow(`the checkpoint in ${dir} was written by a different config`);
  });

  it('refuses checkpoints without a trainer state and missing ones, naming the folder', () => {
    const root = tempDir();
    saveCheckpoint(join(root, 'foreign'), [{ name: 'w', dtype: 'F32', shape: [1], data: Float32Array.from([1]) }]);
    expect(() => readCheckpoint(join(root, 'foreign'), undefined)).toThrow(`cannot use the checkpoint: ${join(root, 'foreign')} has no trainer state`);
    expect(() => readCheckpoint(join(root, 'none'), undefined)).toThrow(/^cannot use the checkpoint: .*none: checkpoint directory is missing$/);
  });

  it('turns layer config errors into config keys', () => {
    expect(layerConfigMessage('invalid PEER layer config: numExperts = 300: must be a perfect square', 'peer')).toBe(
      'invalid config: model.ffw.options.numExperts = 300: must be a perfect square (peer layer)',
    );
    expect(layerConfigMessage('invalid PEER layer config: dim = 33: must be even', 'peer')).toBe('invalid config: model.dim = 33: must be even (peer layer)');
    expect(layerConfigMessage('invalid pkm config: unknown field \'x\'', 'pkm')).toBe("invalid config: model.ffw.options (pkm): unknown field 'x'");
  });
});

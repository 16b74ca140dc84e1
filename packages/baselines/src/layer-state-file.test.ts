import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors } from '@peer/expert-store';
import { testRng } from '@peer/test-utils';
import { loadLayerState, saveLayerState } from './layer-state-file.js';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { MoeTokenChoice } from './moe-token-choice.js';
import { ProductKeyMemory } from './pkm.js';
import { DenseFfw } from './dense-ffw.js';

const makers = {
  dense: (seed: number) => new DenseFfw({ dim: 6, hidden: 10, seed }),
  moe: (seed: number) => new MoeTokenChoice({ dim: 6, experts: 3, hidden: 5, topK: 2, seed }),
  'moe-ec': (seed: number) => new MoeExpertChoice({ dim: 6, experts: 3, hidden: 5, seed }),
  pkm: (seed: number) => new ProductKeyMemory({ dim: 6, memories: 16, heads: 2, topK: 2, seed }),
};

describe('saveLayerState / loadLayerState', () => {
  for (const [kind, make] of Object.entries(makers)) {
    it(`round-trips a ${kind} layer through a safetensors file`, () => {
      const rng = testRng();
      const dir = mkdtempSync(join(tmpdir(), 'baselines-io-'));
      const a = make(1 + rng.int(1000));
      const b = make(2000 + rng.int(1000));
      const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 4 * 6)), [2, 4, 6]);
      try {
        const path = join(dir, `${kind}.safetensors`);
        saveLayerState(a, path, { prefix: 'blocks.1.ffw.', metadata: { kind } });
        const file = readSafetensors(path);
        expect(file.metadata).toEqual({ kind });
        expect(file.arrays.map((e) => e.name).sort()).toEqual(a.stateEntries('blocks.1.ffw.').map((e) => e.name).sort());
        const ya = tf.tidy(() => Array.from(a.apply(x, { training: false }).y.dataSync()));
        expect(tf.tidy(() => Array.from(b.apply(x, { training: false }).y.dataSync()))).not.toEqual(ya);
        loadLayerState(b, path, { prefix: 'blocks.1.ffw.' });
        expect(tf.tidy(() => Array.from(b.apply(x, { training: false }).y.dataSync()))).toEqual(ya);
        expect(() => loadLayerState(b, path, { prefix: 'other.' })).toThrow(`${path}: `);
        const bad = join(dir, 'bad.safetensors');
        writeFileSync(bad, Buffer.from([1, 2, 3]));
        expect(() => loadLayerState(b, bad)).toThrow(/bad\.safetensors/);
      } finally {
        x.dispose();
        a.dispose();
        b.dispose();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

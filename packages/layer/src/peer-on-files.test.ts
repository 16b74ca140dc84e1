// runPeerOnFiles end to end on files: y against PEER-pytorch's forward written in float64 on the weight
// tensors, every gradient (under the weights' own names and layouts) against central differences
// of that same reference.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { readSafetensors, writeSafetensors } from '@peer/expert-store';
import { PeerConfigError } from './config.js';
import { parseLayerOverrides, runPeerOnFiles } from './peer-on-files.js';
import { PeerLayer } from './peer-layer.js';
import { exportPeerPytorch } from './pytorch-layout.js';
import { perturbNorm } from './layer-params.test-util.js';
import { pytorchReference } from './peer-reference.test-util.js';

const dir = mkdtempSync(join(tmpdir(), 'peer-layer-io-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('runPeerOnFiles', () => {
  it('writes y, dx and every weight gradient; all match the float64 PEER-pytorch reference', () => {
    const rng = testRng();
    const [b, s, d, topK] = [2, 3, 16, 3];
    const layer = new PeerLayer({ dim: d, numExperts: 25, heads: 2, topK, dimKey: 4, seed: rng.int(1000) });
    perturbNorm(layer, rng);
    const weights = exportPeerPytorch(layer);
    const paths = { weights: join(dir, 'w.safetensors'), input: join(dir, 'x.safetensors'), output: join(dir, 'y.safetensors'), gradOutput: join(dir, 'dy.safetensors'), gradsOut: join(dir, 'dw.safetensors') };
    // A file as PyTorch would write it: no metadata, so topK comes from the overrides.
    writeSafetensors(paths.weights, weights);
    layer.dispose();
    const arrays = new Map(weights.map((w) => [w.name, { shape: w.shape, data: Float64Array.from(w.data as Float32Array) }]));
    // An input without a near-tie at any top-k boundary, where float32 may pick another k-th expert
    // (float32 scores here are accurate to ~1e-6; 2e-5 leaves a 20x margin).
    let x = rng.normals(b * s * d);
    for (let attempt = 0; pytorchReference(arrays, Float64Array.from(Float32Array.from(x)), b * s, topK, true).boundaryGap <= 2e-5; attempt++) {
      if (attempt === 100) throw new Error(`no input without a top-k near-tie found (seed ${rng.seed})`);
      x = rng.normals(b * s * d);
    }
    const dy = rng.normals(b * s * d);
    writeSafetensors(paths.input, [{ name: 'x', dtype: 'F32', shape: [b, s, d], data: Float32Array.from(x) }]);
    writeSafetensors(paths.gradOutput, [{ name: 'dy', dtype: 'F32', shape: [b, s, d], data: Float32Array.from(dy) }]);
    const before = tf.memory().numTensors;
    const result = runPeerOnFiles({ ...paths, overrides: { topK } });
    expect(tf.memory().numTensors).toBe(before);
    expect(result.training).toBe(true);
    expect(result.gradients.sort()).toEqual(['dx', 'keys', 'query_norm.bias', 'query_norm.weight', 'to_queries.0.weight', 'weight_down_embed.weight', 'weight_up_embed.weight']);

    const x64 = Float64Array.from(Float32Array.from(x));
    const dy64 = Float64Array.from(Float32Array.from(dy));
    const ref = pytorchReference(arrays, x64, b * s, topK, true);
    const y = readSafetensors(paths.output).get('y')!;
    expect(y.shape).toEqual([b, s, d]);
    expectClose(y.data as Float32Array, ref.y, { rtol: 1e-3, atol: 1e-5, label: `y seed ${rng.seed}` });

    const grads = readSafetensors(paths.gradsOut);
    const loss = (name: string, index: number, delta: number): number | undefined => {
      let xs = x64;
      const changed = new Map(arrays);
      if (name === 'dx') {
        xs = Float64Array.from(x64);
        xs[index]! += delta;
      } else {
        const e = arrays.get(name)!;
        const data = Float64Array.from(e.data);
        data[index]! += delta;
        changed.set(name, { shape: e.shape, data });
      }
      const out = pytorchReference(changed, xs, b * s, topK, true);
      if (out.indices.join() !== ref.indices.join()) return undefined;
      return out.y.reduce((acc, v, i) => acc + v * dy64[i]!, 0);
    };
    const retrieved = [...new Set(ref.indices)];
    let checked = 0;
    for (const name of result.gradients) {
      const g = grads.get(name)!;
      expect(g.shape).toEqual(name === 'dx' ? [b, s, d] : arrays.get(name)!.shape);
      const values = g.data as Float32Array;
      const scale = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const table = name.startsWith('weight_');
      for (let n = 0; n < 10; n++) {
        const index = table ? retrieved[rng.int(retrieved.length)]! * d + rng.int(d) : rng.int(values.length);
        const plus = loss(name, index, 1e-5);
        const minus = loss(name, index, -1e-5);
        if (plus === undefined || minus === undefined) continue;
        const numeric = (plus - minus) / 2e-5;
        const tol = 2e-3 * Math.abs(numeric) + 2e-4 * scale + 1e-6;
        if (!(Math.abs(values[index]! - numeric) <= tol)) throw new Error(`${name}[${index}]: file ${values[index]}, finite differences ${numeric} (seed ${rng.seed})`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('runs forward only without gradOutput, in evaluation mode when asked', () => {
    const rng = testRng();
    const layer = new PeerLayer({ dim: 8, numExperts: 16, heads: 2, topK: 2, dimKey: 3, seed: rng.int(1000) });
    perturbNorm(layer, rng);
    const w = join(dir, 'w2.safetensors');
    writeSafetensors(w, exportPeerPytorch(layer));
    const x = Float32Array.from(rng.normals(5 * 8));
    writeSafetensors(join(dir, 'x2.safetensors'), [{ name: 'x', dtype: 'F32', shape: [5, 8], data: x }]);
    const { overrides, training } = parseLayerOverrides(['topK=2', 'training=false']);
    runPeerOnFiles({ weights: w, input: join(dir, 'x2.safetensors'), output: join(dir, 'y2.safetensors'), overrides, training });
    const y = readSafetensors(join(dir, 'y2.safetensors')).get('y')!;
    expect(y.shape).toEqual([5, 8]);
    const xt = tf.tensor3d(x, [1, 5, 8]);
    expect(Array.from(y.data as Float32Array)).toEqual(Array.from(tf.tidy(() => layer.apply(xt, { training: false }).y.dataSync())));
    xt.dispose();
    layer.dispose();
    expect(() => runPeerOnFiles({ weights: w, input: join(dir, 'x2.safetensors'), output: join(dir, 'y3.safetensors'), gradOutput: join(dir, 'x2.safetensors') })).toThrow('gradOutput needs gradsOut');
    expect(() => runPeerOnFiles({ weights: w, input: join(dir, 'x2.safetensors'), output: join(dir, 'y3.safetensors') })).toThrow('topK = 16: must be at most sqrt(numExperts) = 4');
  });

  it('parses --set overrides with one clear error per bad setting', () => {
    expect(parseLayerOverrides(['topK=4', 'activation=relu', 'sharedKeys=true', 'expertOptimizer.lr=0.01'])).toEqual({
      overrides: { topK: 4, activation: 'relu', sharedKeys: true, expertOptimizer: { lr: 0.01 } },
    });
    expect(() => parseLayerOverrides(['topk=4'])).toThrow(PeerConfigError);
    expect(() => parseLayerOverrides(['topk=4'])).toThrow("topk = \"4\": unknown setting");
    expect(() => parseLayerOverrides(['training=maybe'])).toThrow('training = "maybe": expected true or false');
    expect(() => parseLayerOverrides(['topK'])).toThrow('expected key=value');
  });
});

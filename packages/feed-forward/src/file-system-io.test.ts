// The file:// handler with a minimal wrapped layer (a dense scale vector plus a host table updated by
// the sparse step): round trips keep outputs and state bit for bit, saves replace their files by
// generation, and every broken save names what is missing.
//
// Axes: B batch, D model width, N table rows.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSafetensors, type NamedArray } from '@peer/expert-store';
import type { FeedForwardLayer, StateEntryGetter } from './feed-forward-layer.js';
import { FeedForwardTfLayer, fileSystem, registerFileSystemRouter, sparseStep, type NamedVariable } from './tf-layers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ffw-file-io-'));
  dirs.push(d);
  return d;
}

/** y = x * scale + table[0]; sparseStep adds lrScale to every table row (state outside tfjs). */
class ScaleLayer implements FeedForwardLayer {
  readonly kind = 'dense' as const;
  readonly dim: number;
  readonly scale: tf.Variable;
  readonly table: Float32Array;
  constructor(readonly config: { dim: number; rows: number; seed: number }) {
    this.dim = config.dim;
    this.scale = tf.variable(tf.fill([config.dim], 1 + config.seed / 1000));
    this.table = new Float32Array(config.rows * config.dim);
  }
  apply(x: tf.Tensor3D): { y: tf.Tensor3D } {
    return { y: tf.add(tf.mul(x, this.scale), tf.tensor1d(this.table.subarray(0, this.dim))) as tf.Tensor3D };
  }
  trainableVariables(): tf.Variable[] {
    return [this.scale];
  }
  sparseStep(lrScale: number): void {
    for (let i = 0; i < this.table.length; i++) this.table[i]! += lrScale * (i + 1);
  }
  zeroSparseGrads(): void {}
  flopsPerToken(): number {
    return 2 * this.dim;
  }
  activeParamsPerToken(): number {
    return 2 * this.dim;
  }
  totalParams(): number {
    return this.dim + this.table.length;
  }
  stateEntries(prefix: string): NamedArray[] {
    return [{ name: `${prefix}table`, dtype: 'F32', shape: [this.config.rows, this.dim], data: this.table }];
  }
  loadStateEntries(prefix: string, get: StateEntryGetter): void {
    const e = get(`${prefix}table`);
    if (!e) throw new Error(`entry '${prefix}table' is missing`);
    this.table.set(e.data as Float32Array);
  }
  dispose(): void {
    this.scale.dispose();
  }
}

class ScaleTfLayer extends FeedForwardTfLayer<ScaleLayer> {
  static readonly className = 'TestScale';
  protected createLayer(config: Record<string, unknown> & { dim: number }): ScaleLayer {
    return new ScaleLayer(config as { dim: number; rows: number; seed: number });
  }
  protected namedVariables(layer: ScaleLayer): NamedVariable[] {
    return [{ name: 'scale', variable: layer.scale, trainable: true }];
  }
  protected pendingSparseRows(): number {
    return 0;
  }
}
tf.serialization.registerClass(ScaleTfLayer);

function model(): tf.Sequential {
  return tf.sequential({ layers: [new ScaleTfLayer({ rows: 3, inputShape: [4] }), tf.layers.dense({ units: 2 }), new ScaleTfLayer({ rows: 2, name: 'second/ffw' })] });
}

describe('fileSystem IOHandler and the file:// router', () => {
  it('registers file:// once', () => {
    expect(registerFileSystemRouter()).toBe(true);
    expect(registerFileSystemRouter()).toBe(true);
    expect(tf.io.getSaveHandlers('file:///x').length).toBe(1);
    expect(tf.io.getLoadHandlers('file:///x/model.json').length).toBe(1);
  });

  it('round-trips outputs and each wrapped layer\'s state; a second save replaces the first one\'s files', async () => {
    const m = model();
    sparseStep(m, 0.5);
    // A trained dense weight (it travels in weights-*.bin, not in the state files).
    (m.layers[0] as ScaleTfLayer).layer.scale.assign(tf.tensor1d([0.5, -1, 2, 3]));
    const dir = tempDir();
    writeFileSync(join(dir, 'notes.txt'), 'not ours');
    await m.save(fileSystem(dir));
    const first = readdirSync(dir).sort();
    expect(first.filter((f) => f.endsWith('.safetensors')).length).toBe(2);
    expect(first.some((f) => f.includes('second-ffw'))).toBe(true);
    for (const path of [dir, join(dir, 'model.json'), `file://${dir}/model.json`]) {
      const loaded = await tf.loadLayersModel(path.startsWith('file://') ? path : fileSystem(path));
      const x = tf.randomNormal([3, 4]);
      const expected = m.predict(x) as tf.Tensor;
      const actual = loaded.predict(x) as tf.Tensor;
      expect(actual.dataSync()).toEqual(expected.dataSync());
      const layers = loaded.layers.filter((l): l is ScaleTfLayer => l instanceof ScaleTfLayer);
      expect(layers.map((l) => l.name)).toEqual([m.layers[0]!.name, 'second/ffw']);
      expect(layers[1]!.layer.table).toEqual((m.layers[2] as ScaleTfLayer).layer.table);
      expect(layers[0]!.layer.table).toEqual((m.layers[0] as ScaleTfLayer).layer.table);
      tf.dispose([x, expected, actual]);
      loaded.dispose();
    }
    sparseStep(m, 1);
    await m.save(`file://${dir}`);
    const second = readdirSync(dir).sort();
    expect(second.length).toBe(first.length);
    expect(second.filter((f) => first.includes(f))).toEqual(['model.json', 'notes.txt']);
    const loaded = await tf.loadLayersModel(`file://${dir}`);
    expect((loaded.layers[2] as ScaleTfLayer).layer.table).toEqual((m.layers[2] as ScaleTfLayer).layer.table);
    loaded.dispose();
    m.dispose();
  });

  it('names the missing state file, and refuses a model saved without its layers\' state', async () => {
    const m = model();
    const dir = tempDir();
    await m.save(fileSystem(dir));
    const stateFile = readdirSync(dir).find((f) => f.endsWith('.safetensors'))!;
    rmSync(join(dir, stateFile));
    await expect(tf.loadLayersModel(fileSystem(dir))).rejects.toThrow(stateFile);

    // What a handler that knows nothing of the state writes (tfjs-node's, tf.io.withSaveHandler).
    let artifacts: tf.io.ModelArtifacts | undefined;
    await m.save(tf.io.withSaveHandler(async (a) => ((artifacts = a), { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) })));
    await expect(tf.loadLayersModel(tf.io.fromMemory(artifacts!))).rejects.toThrow(/state \(expert tables, sparse optimizer\) was not loaded with it/);

    // A state file that does not fit the layer: the error names the file, the layer and the entry.
    await m.save(fileSystem(dir));
    const wrongFile = readdirSync(dir).find((f) => f.endsWith('.safetensors') && !f.includes('second-ffw'))!;
    writeSafetensors(join(dir, wrongFile), [{ name: 'other', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    await expect(tf.loadLayersModel(fileSystem(dir))).rejects.toThrow(new RegExp(`${wrongFile}: layer '${m.layers[0]!.name}': entry 'table' is missing`));

    const bad = tempDir();
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { modelTopology: { config: { layers: { config: Record<string, unknown> }[] } } };
    json.modelTopology.config.layers[0]!.config.state_file = '../elsewhere.safetensors';
    writeFileSync(join(bad, 'model.json'), JSON.stringify(json));
    await expect(tf.loadLayersModel(fileSystem(bad))).rejects.toThrow(/state_file '..\/elsewhere.safetensors' of layer '.*' must be a file name beside model.json/);
    await expect(tf.loadLayersModel(fileSystem(join(bad, 'nothing')))).rejects.toThrow(/nothing\/model.json: cannot read the model/);
    expect(existsSync(join(bad, 'nothing'))).toBe(false);
    m.dispose();
  });
});

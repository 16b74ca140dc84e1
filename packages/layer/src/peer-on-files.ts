// One PEER layer, forward (and backward) on tensors from files: the library side of
// `peer-train layer-io`, for checking this implementation against PEER-pytorch.
//
//   weights   PEER-pytorch safetensors (pytorch-layout.ts)
//   input     x [B, S, d] or [T, d]
//   output    y, same shape as x
//   gradOutput  dy, same shape as y (optional)
//   gradsOut    dx and the gradient of every weight under the weight's own name; the expert tables'
//               gradients are dense [N', d] (meant for small N)
//
// T tokens, d model width.
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, writeSafetensors, type NamedArray } from '@peer/expert-store';
import { PeerConfigError, PeerLayerConfigSchema, type PeerLayerConfig } from './config.js';
import type { RowGradientSink } from './expert-mixture.js';
import { loadPeerPytorch } from './pytorch-files.js';
import { DOWN_NAME, PYTORCH_NAMES, UP_NAME } from './pytorch-layout.js';
import { featuresToPytorch, queryWeightToPytorch } from './query-layout.js';

export interface PeerOnFilesOptions {
  /** PEER-pytorch weights (safetensors). */
  weights: string;
  /** Input file holding `x`. */
  input: string;
  /** Output file: `y`. */
  output: string;
  /** File holding `dy`; with it, backward runs. */
  gradOutput?: string;
  /** Where backward writes `dx` and the weight gradients (required with gradOutput). */
  gradsOut?: string;
  /** Layer settings the weights cannot tell (topK, activation, scores, ...). */
  overrides?: Partial<PeerLayerConfig>;
  /** BatchNorm with batch statistics (PyTorch's train mode, the default) or running statistics. */
  training?: boolean;
}

export interface PeerOnFilesResult {
  config: PeerLayerConfig;
  training: boolean;
  /** Shape of x (and y). */
  shape: number[];
  /** Names written to gradsOut. */
  gradients: string[];
}

/** Adds row gradients into a dense [rows, d] array. */
export class DenseRowGradient implements RowGradientSink {
  readonly data: Float32Array;
  constructor(
    readonly rows: number,
    readonly dim: number,
  ) {
    this.data = new Float32Array(rows * dim);
  }

  accumulate(indices: Int32Array, rowGrads: Float32Array): void {
    const d = this.dim;
    for (let i = 0; i < indices.length; i++) {
      const o = indices[i]! * d;
      for (let j = 0; j < d; j++) this.data[o + j]! += rowGrads[i * d + j]!;
    }
  }
}

function floatEntry(file: string, entry: NamedArray | undefined, name: string): NamedArray {
  if (!entry) throw new Error(`${file}: has no tensor named '${name}'`);
  if (entry.dtype !== 'F32' && entry.dtype !== 'F64') throw new Error(`${file}: '${name}' has dtype ${entry.dtype}, expected F32 or F64`);
  return entry;
}

/** Runs the layer of `weights` on `x` from `input`, writes `y`, and with `gradOutput` the gradients. */
export function runPeerOnFiles(options: PeerOnFilesOptions): PeerOnFilesResult {
  if (options.gradOutput !== undefined && options.gradsOut === undefined) {
    throw new Error('runPeerOnFiles: gradOutput needs gradsOut (where to write the gradients)');
  }
  const training = options.training ?? true;
  const layer = loadPeerPytorch(options.weights, options.overrides ?? {});
  try {
    const c = layer.config;
    const x = floatEntry(options.input, readSafetensors(options.input).get('x'), 'x');
    if (x.shape.length < 2 || x.shape.length > 3 || x.shape[x.shape.length - 1] !== c.dim) {
      throw new Error(`${options.input}: 'x' has shape [${x.shape.join(', ')}], expected [batch, seq, ${c.dim}] or [tokens, ${c.dim}]`);
    }
    const tokens = x.data.length / c.dim;
    let dy: NamedArray | undefined;
    if (options.gradOutput !== undefined) {
      dy = floatEntry(options.gradOutput, readSafetensors(options.gradOutput).get('dy'), 'dy');
      if (dy.shape.join(',') !== x.shape.join(',')) {
        throw new Error(`${options.gradOutput}: 'dy' has shape [${dy.shape.join(', ')}], expected the shape of y [${x.shape.join(', ')}]`);
      }
    }
    const result: PeerOnFilesResult = { config: { ...c }, training, shape: [...x.shape], gradients: [] };
    const x3 = tf.tensor3d(Float32Array.from(x.data as Float32Array), [1, tokens, c.dim]);
    try {
      if (!dy) {
        const y = tf.tidy(() => layer.apply(x3, { training }).y.dataSync() as Float32Array);
        writeSafetensors(options.output, [{ name: 'y', dtype: 'F32', shape: [...x.shape], data: y }]);
        return result;
      }
      const down = new DenseRowGradient(c.tableRows, c.dim);
      const up = new DenseRowGradient(c.tableRows, c.dim);
      const dyT = tf.tensor3d(Float32Array.from(dy.data as Float32Array), [1, tokens, c.dim]);
      const xVar = tf.variable(x3, true);
      const vars = layer.trainableVariables();
      let y: Float32Array | undefined;
      const grads = layer.withRowGradientSinks({ down, up }, () => {
        const { value, grads: g } = tf.variableGrads(() => {
          const out = layer.apply(xVar, { training }).y;
          y = out.dataSync() as Float32Array;
          return tf.sum(tf.mul(out, dyT)) as tf.Scalar;
        }, [xVar, ...vars]);
        const read = (v: tf.Variable) => g[v.name]!.dataSync() as Float32Array;
        const values = { dx: read(xVar), dense: new Map(vars.map((v) => [v.name, read(v)])) };
        tf.dispose([value, ...Object.values(g)]);
        return values;
      });
      xVar.dispose();
      dyT.dispose();
      writeSafetensors(options.output, [{ name: 'y', dtype: 'F32', shape: [...x.shape], data: y! }]);
      const f = 2 * c.heads * c.dimKey;
      const out: NamedArray[] = [
        { name: 'dx', dtype: 'F32', shape: [...x.shape], data: grads.dx },
        { name: DOWN_NAME, dtype: 'F32', shape: [c.tableRows, c.dim], data: down.data },
        { name: UP_NAME, dtype: 'F32', shape: [c.tableRows, c.dim], data: up.data },
        {
          name: PYTORCH_NAMES.queryWeight,
          dtype: 'F32',
          shape: [f, c.dim],
          data: queryWeightToPytorch(grads.dense.get(layer.queryWeight.name)!, c.dim, c.heads, c.dimKey),
        },
      ];
      // Sub-key gradients in the keys' layout [H', sqrtN, 2, dk] (H' = 1 with shared keys).
      const g1 = grads.dense.get(layer.keys.subKeys1.name)!;
      const g2 = grads.dense.get(layer.keys.subKeys2.name)!;
      const sets = layer.keys.subKeys1.shape[0];
      const keys = new Float32Array(sets * c.subKeys * 2 * c.dimKey);
      for (let s = 0; s < sets * c.subKeys; s++) {
        keys.set(g1.subarray(s * c.dimKey, (s + 1) * c.dimKey), (2 * s) * c.dimKey);
        keys.set(g2.subarray(s * c.dimKey, (s + 1) * c.dimKey), (2 * s + 1) * c.dimKey);
      }
      out.push({ name: PYTORCH_NAMES.keys, dtype: 'F32', shape: [sets, c.subKeys, 2, c.dimKey], data: keys });
      const norm = layer.queryNorm;
      if (norm.weight && norm.bias) {
        out.push({ name: PYTORCH_NAMES.normWeight, dtype: 'F32', shape: [f], data: featuresToPytorch(grads.dense.get(norm.weight.name)!, c.heads, c.dimKey) });
        out.push({ name: PYTORCH_NAMES.normBias, dtype: 'F32', shape: [f], data: featuresToPytorch(grads.dense.get(norm.bias.name)!, c.heads, c.dimKey) });
      }
      writeSafetensors(options.gradsOut!, out);
      result.gradients = out.map((e) => e.name);
      return result;
    } finally {
      x3.dispose();
    }
  } finally {
    layer.dispose();
  }
}

/**
 * Parses `key=value` settings (the CLI's `--set`) into layer overrides: numbers, booleans and
 * strings by the schema's field types; `expertOptimizer.lr=...` for nested fields. `training` is
 * returned separately. One clear error per bad setting.
 */
export function parseLayerOverrides(settings: readonly string[]): { overrides: Partial<PeerLayerConfig>; training?: boolean } {
  const overrides: Record<string, unknown> = {};
  let training: boolean | undefined;
  const fields = PeerLayerConfigSchema.shape as Record<string, unknown>;
  for (const setting of settings) {
    const eq = setting.indexOf('=');
    if (eq <= 0) throw new PeerConfigError('--set', setting, 'expected key=value');
    const key = setting.slice(0, eq).trim();
    const raw = setting.slice(eq + 1).trim();
    const value = raw === 'true' ? true : raw === 'false' ? false : raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    if (key === 'training') {
      if (typeof value !== 'boolean') throw new PeerConfigError('training', raw, 'expected true or false');
      training = value;
      continue;
    }
    const path = key.split('.');
    if (!(path[0]! in fields)) throw new PeerConfigError(key, raw, `unknown setting (known: training, ${Object.keys(fields).join(', ')})`);
    if (path.length === 1) overrides[key] = value;
    else if (path.length === 2) overrides[path[0]!] = { ...((overrides[path[0]!] as object | undefined) ?? {}), [path[1]!]: value };
    else throw new PeerConfigError(key, raw, 'settings nest at most one level (e.g. expertOptimizer.lr)');
  }
  return training === undefined ? { overrides: overrides as Partial<PeerLayerConfig> } : { overrides: overrides as Partial<PeerLayerConfig>, training };
}

// Weights in the layout of PEER-pytorch (lucidrains/PEER-pytorch), one safetensors file per layer:
//
//   weight_down_embed.weight   [N', d]          u rows (N' = N, or h*N with separate pools per head)
//   weight_up_embed.weight     [N', d]          v rows
//   keys                       [h, sqrtN, 2, dk] sub-keys; index 0 on axis 2 is the first half
//   to_queries.0.weight        [2*h*dk, d]      nn.Linear weight [out, in]; out features (half, head, dk)
//   query_norm.weight|bias     [2*h*dk]         BatchNorm1d / LayerNorm affine, same feature order
//   query_norm.running_mean|running_var [2*h*dk] BatchNorm1d running statistics
//
// h heads, dk sub-key width, d model width, N experts, F = 2*h*dk query features.
// Our query features are ordered (head, half, dk) and Wq is [d, F]: see query-layout.ts.
import * as tf from '@tensorflow/tfjs-core';
import { bfloat16ToFloat32, float16ToFloat32, type NamedArray } from '@peer/expert-store';
import type { PeerLayerConfig } from './config.js';
import type { PeerLayer } from './peer-layer.js';
import { featuresFromPytorch, featuresToPytorch, queryWeightFromPytorch, queryWeightToPytorch } from './query-layout.js';

/** PEER-pytorch's names of the u and v tables (also our tables' names). */
export const DOWN_NAME = 'weight_down_embed.weight';
export const UP_NAME = 'weight_up_embed.weight';

export const PYTORCH_NAMES = {
  down: DOWN_NAME,
  up: UP_NAME,
  keys: 'keys',
  queryWeight: 'to_queries.0.weight',
  normWeight: 'query_norm.weight',
  normBias: 'query_norm.bias',
  runningMean: 'query_norm.running_mean',
  runningVar: 'query_norm.running_var',
} as const;

export type EntryGetter = (name: string) => NamedArray | undefined;

function f32(name: string, data: Float32Array, shape: number[]): NamedArray {
  return { name, dtype: 'F32', shape, data };
}

/** Float32 values of a floating-point entry (F32 as is; F64, F16, BF16 converted). */
function floatValues(entry: NamedArray): Float32Array {
  switch (entry.dtype) {
    case 'F32':
      return entry.data as Float32Array;
    case 'F64':
      return Float32Array.from(entry.data as Float64Array);
    case 'F16':
      return float16ToFloat32(entry.data as Uint16Array);
    case 'BF16':
      return bfloat16ToFloat32(entry.data as Uint16Array);
    default:
      throw new Error(`PEER weights: '${entry.name}' has dtype ${entry.dtype}, expected a floating-point dtype (F32, F64, F16, BF16)`);
  }
}

function expect(get: EntryGetter, name: string, shape: number[], where: string): Float32Array {
  const entry = get(name);
  if (!entry) throw new Error(`${where}: tensor '${name}' is missing (expected shape [${shape.join(', ')}])`);
  if (entry.shape.length !== shape.length || entry.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`${where}: tensor '${name}' has shape [${entry.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return floatValues(entry);
}

/**
 * The layer's weights under PEER-pytorch's names and shapes (prefixed with `prefix`). The expert
 * tables are the live table memory (no copy); the rest are copies.
 */
export function exportPeerPytorch(layer: PeerLayer, prefix = ''): NamedArray[] {
  const c = layer.config;
  const f = 2 * c.heads * c.dimKey;
  // Reads only the variables themselves (readable on a device engine after `prepareState`).
  const out: NamedArray[] = [...layer.down.stateEntries(prefix), ...layer.up.stateEntries(prefix)];
  out.push(f32(`${prefix}${PYTORCH_NAMES.keys}`, peerPytorchKeys(layer), [c.heads, c.subKeys, 2, c.dimKey]));
  out.push(f32(`${prefix}${PYTORCH_NAMES.queryWeight}`, queryWeightToPytorch(layer.queryWeight.dataSync(), c.dim, c.heads, c.dimKey), [f, c.dim]));
  const norm = layer.queryNorm;
  const feature = (name: string, v: tf.Variable | undefined) => {
    if (v) out.push(f32(`${prefix}${name}`, featuresToPytorch(v.dataSync(), c.heads, c.dimKey), [f]));
  };
  feature(PYTORCH_NAMES.normWeight, norm.weight);
  feature(PYTORCH_NAMES.normBias, norm.bias);
  feature(PYTORCH_NAMES.runningMean, norm.runningMean);
  feature(PYTORCH_NAMES.runningVar, norm.runningVar);
  return out;
}

/** The sub-keys in PEER-pytorch's layout [h, sqrtN, 2, dk] (shared keys repeated per head), built on the host. */
function peerPytorchKeys(layer: PeerLayer): Float32Array {
  const { heads, subKeys, dimKey } = layer.config;
  const halves = [layer.keys.subKeys1.dataSync() as Float32Array, layer.keys.subKeys2.dataSync() as Float32Array];
  const perSet = subKeys * dimKey;
  const out = new Float32Array(heads * subKeys * 2 * dimKey);
  for (let head = 0; head < heads; head++) {
    const set = layer.keys.sharedKeys ? 0 : head;
    for (let i = 0; i < subKeys; i++) {
      for (let half = 0; half < 2; half++) {
        const from = set * perSet + i * dimKey;
        out.set(halves[half]!.subarray(from, from + dimKey), ((head * subKeys + i) * 2 + half) * dimKey);
      }
    }
  }
  return out;
}

/**
 * Loads PEER-pytorch weights (`prefix` + the names above) into `layer`. Every tensor is checked
 * before anything changes; an error names the tensor, its shape and the expected one.
 */
export function loadPeerPytorchInto(layer: PeerLayer, get: EntryGetter, prefix = ''): void {
  const c = layer.config;
  const f = 2 * c.heads * c.dimKey;
  const where = 'loading PEER-pytorch weights';
  const at = (name: string) => `${prefix}${name}`;
  const wq = expect(get, at(PYTORCH_NAMES.queryWeight), [f, c.dim], where);
  const keys = expect(get, at(PYTORCH_NAMES.keys), [c.heads, c.subKeys, 2, c.dimKey], where);
  const norm = layer.queryNorm;
  const features: [tf.Variable, Float32Array][] = [];
  const normNames = [
    [PYTORCH_NAMES.normWeight, norm.weight],
    [PYTORCH_NAMES.normBias, norm.bias],
    [PYTORCH_NAMES.runningMean, norm.runningMean],
    [PYTORCH_NAMES.runningVar, norm.runningVar],
  ] as const;
  for (const [name, v] of normNames) {
    if (v) features.push([v, expect(get, at(name), [f], where)]);
    else if (get(at(name))) {
      throw new Error(`${where}: the file has '${at(name)}' but the layer's queryNorm is '${c.queryNorm}' (set queryNorm to match the file)`);
    }
  }
  for (const name of [DOWN_NAME, UP_NAME]) expect(get, at(name), [c.tableRows, c.dim], where);

  // Everything checked: assign.
  tf.tidy(() => {
    layer.queryWeight.assign(tf.tensor2d(queryWeightFromPytorch(wq, c.dim, c.heads, c.dimKey), [c.dim, f]));
    for (const [v, values] of features) v.assign(tf.tensor1d(featuresFromPytorch(values, c.heads, c.dimKey)));
    layer.keys.loadPeerPytorchKeys(keys);
  });
  layer.down.loadStateEntries(prefix, get);
  layer.up.loadStateEntries(prefix, get);
  layer.expertTablesChanged();
}

/**
 * The layer config that PEER-pytorch weights imply: dim, numExperts, heads, dimKey from the shapes;
 * separateExpertsPerHead when the tables hold heads x N rows; queryNorm from the query_norm tensors
 * present. `overrides` set everything else (topK, activation, scores, ...) and win over inferred values.
 */
export function peerConfigFromPytorch(get: EntryGetter, overrides: Partial<PeerLayerConfig> = {}, prefix = ''): PeerLayerConfig {
  const where = 'PEER-pytorch weights';
  const need = (name: string, rank: number): number[] => {
    const e = get(`${prefix}${name}`);
    if (!e) throw new Error(`${where}: tensor '${prefix}${name}' is missing`);
    if (e.shape.length !== rank) throw new Error(`${where}: tensor '${prefix}${name}' has shape [${e.shape.join(', ')}], expected rank ${rank}`);
    return e.shape;
  };
  const [heads, subKeys, two, dimKey] = need(PYTORCH_NAMES.keys, 4) as [number, number, number, number];
  if (two !== 2) throw new Error(`${where}: tensor '${prefix}keys' has shape [${heads}, ${subKeys}, ${two}, ${dimKey}], expected [heads, sqrtN, 2, dimKey]`);
  const [rows, dim] = need(DOWN_NAME, 2) as [number, number];
  const numExperts = subKeys * subKeys;
  let separate: boolean;
  if (rows === numExperts) separate = false;
  else if (rows === heads * numExperts) separate = true;
  else throw new Error(`${where}: '${prefix}${DOWN_NAME}' has ${rows} rows; keys [${heads}, ${subKeys}, 2, ${dimKey}] imply ${numExperts} experts (or ${heads * numExperts} with a pool per head)`);
  const queryNorm = get(`${prefix}${PYTORCH_NAMES.runningMean}`) ? 'batch' : get(`${prefix}${PYTORCH_NAMES.normWeight}`) ? 'layer' : 'none';
  return { dim, numExperts, heads, dimKey, separateExpertsPerHead: separate, queryNorm, ...overrides };
}


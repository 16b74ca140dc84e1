// Keeps the wasm engine's XNNPACK matMul cache from reusing an operator under the wrong shape.
// The C BatchMatMul (tfjs 4.22, batch_mat_mul_impl.cc) caches one XNNPACK fully-connected operator per
// (b's tensor id, bias id, activation); the operator holds a packed copy of b as a [K, P] matrix and
// is reused whenever that id comes back, whatever shape b has then. Reshape (and this package's
// Transpose when no data moves, e.g. [1, 4] -> [4, 1]) shares the tensor id, so the same id can come
// back as a [K', P'] matrix: the operator then reads a with K columns and writes M x P outputs into
// an M x P' buffer (wrong values when P < P', a heap overflow when P > P', which aborts the process).
// The fix: remember, per b's data, the [K, P] under which it last went to the C kernel; when it
// comes with another one, forget the tensor on the C side and register it again (same id, offset and
// size). Forgetting runs the tensor's disposal callbacks, which delete its cached operators; the
// memory is not freed and the JS side is untouched.
// Axes: M rows of a, K contracted axis (b's rows), P columns of b.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackend } from './wasm-backend.js';

interface CachedAs {
  /** The C-side tensor id (data moved to another engine and back gets a new one). */
  id: number;
  k: number;
  n: number;
}

// Keyed by the dataId object, so an entry goes away with its tensor data.
const cachedAs = new WeakMap<object, CachedAs>();

/**
 * Call right before handing `b` (plain layout, `[..., K, P]`) by its own tensor id to the engine's C
 * BatchMatMul / _FusedMatMul. Evicts the XNNPACK operators cached on `b`'s id when the last call saw
 * it with another `[K, P]`; returns whether it evicted. One WeakMap lookup when the shape is unchanged.
 */
export function evictStaleMatMulOperator(b: TensorInfo, backend: WasmBackend): boolean {
  const data = backend.dataIdMap.get(b.dataId);
  if (!data) return false;
  const r = b.shape.length;
  const k = b.shape[r - 2]!;
  const n = b.shape[r - 1]!;
  const seen = cachedAs.get(b.dataId);
  if (seen === undefined || seen.id !== data.id) {
    cachedAs.set(b.dataId, { id: data.id, k, n });
    return false;
  }
  if (seen.k === k && seen.n === n) return false;
  const { tfjs } = backend.wasm;
  const size = data.shape.reduce((p, d) => p * d, 1);
  tfjs.disposeData(data.id);
  tfjs.registerTensor(data.id, size, data.memoryOffset);
  seen.k = k;
  seen.n = n;
  return true;
}

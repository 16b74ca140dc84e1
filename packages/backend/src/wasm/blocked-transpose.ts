// Swapping the last two axes of a tensor by a blocked copy in JS, used by the transpose-first
// matMuls and the Transpose fix: faster than the wasm Transpose kernel (README, Benchmarks).
// Axes: Bt batch (product of the leading axes), M rows, P columns: out[b, p, m] = x[b, m, p].
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { wordOffset, type WasmBackend } from './wasm-backend.js';

// Tile edge of the blocked transpose: a 16 x 16 tile of 4-byte words keeps both the rows read and
// the rows written in L1 (the fastest of the tile edges tried; README).
const TILE = 16;

/**
 * `x` (4-byte elements) with its last two axes swapped, as a new tensor on the heap that the caller
 * disposes. `outShape` overrides the output's shape (same size; e.g. with size-1 axes put back).
 */
export function transposeLastTwo(x: TensorInfo, backend: WasmBackend, outShape?: number[]): TensorInfo {
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw new Error(`transposeLastTwo: 4-byte dtypes only, got ${x.dtype}`);
  const r = x.shape.length;
  const rows = x.shape[r - 2]!;
  const cols = x.shape[r - 1]!;
  const batch = x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const out = backend.makeOutput(outShape ?? [...x.shape.slice(0, -2), cols, rows], x.dtype);
  // An int32 view moves every bit pattern exactly (a float32 view would canonicalize NaNs).
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer);
  const src0 = wordOffset(backend, x);
  const dst0 = wordOffset(backend, out);
  const size = rows * cols;
  for (let b = 0; b < batch; b++) {
    const src = src0 + b * size;
    const dst = dst0 + b * size;
    for (let i0 = 0; i0 < rows; i0 += TILE) {
      const i1 = Math.min(i0 + TILE, rows);
      for (let j0 = 0; j0 < cols; j0 += TILE) {
        const j1 = Math.min(j0 + TILE, cols);
        for (let i = i0; i < i1; i++) {
          const from = src + i * cols;
          for (let j = j0; j < j1; j++) heap[dst + j * rows + i] = heap[from + j]!;
        }
      }
    }
  }
  return out;
}

// UnsortedSegmentSum for wasm, which lacks it: without it `tf.grad` through `tf.gather` throws,
// because gather's gradient scatters dy back with this op.
// N entries (segmentIds.size), S segments (numSegments), R row width (product of x's trailing axes).
// out[s, :] = sum over i with segmentIds[i] = s of x[i, :]; ids outside [0, S) are dropped (TF semantics).
import * as tf from '@tensorflow/tfjs-core';
import { util } from '@tensorflow/tfjs-core';
import type { TensorInfo, UnsortedSegmentSumAttrs } from '@tensorflow/tfjs-core';
import { heapF32, wordOffset, type KernelArgs, type WasmKernelFix } from './wasm-backend.js';

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const segmentIds = inputs.segmentIds!;
  const { numSegments } = attrs as unknown as UnsortedSegmentSumAttrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32 x, got ${x.dtype}`);
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`);
  }
  const idRank = segmentIds.shape.length;
  if (!util.arraysEqual(x.shape.slice(0, idRank), segmentIds.shape)) {
    throw new Error(
      `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must be a prefix of x shape [${x.shape}]`,
    );
  }
  const ids = backend.readSync(segmentIds.dataId);
  const n = ids.length;
  const rowWidth = util.sizeFromShape(x.shape.slice(idRank));
  const out = backend.makeOutput([numSegments, ...x.shape.slice(idRank)], x.dtype);
  const total = numSegments * rowWidth;
  if (total === 0) return out;

  // Views only after the allocation above. Float32 views copy int32 words bit-exactly, but adding
  // needs the real element type.
  const heap = x.dtype === 'float32' ? heapF32(backend) : new Int32Array(backend.wasm.HEAPU8.buffer);
  const xBase = wordOffset(backend, x);
  const outBase = wordOffset(backend, out);
  // The first entry of a segment is copied, later ones added; segments no entry reaches are zeroed.
  // This skips zero-filling the whole output (makeOutput memory is not zeroed).
  const touched = new Uint8Array(numSegments);
  for (let i = 0; i < n; i++) {
    const s = ids[i]!;
    if (!(s >= 0 && s < numSegments)) continue;
    const src = xBase + i * rowWidth;
    const dst = outBase + s * rowWidth;
    if (touched[s] === 0) {
      touched[s] = 1;
      heap.copyWithin(dst, src, src + rowWidth);
    } else {
      for (let k = 0; k < rowWidth; k++) heap[dst + k]! += heap[src + k]!;
    }
  }
  for (let s = 0; s < numSegments; ) {
    if (touched[s] !== 0) {
      s++;
      continue;
    }
    let end = s + 1;
    while (end < numSegments && touched[end] === 0) end++;
    heap.fill(0, outBase + s * rowWidth, outBase + end * rowWidth);
    s = end;
  }
  return out;
}

export const unsortedSegmentSumFix: WasmKernelFix = {
  name: 'UnsortedSegmentSum',
  kernelName: tf.UnsortedSegmentSum,
  kernelFunc: () => unsortedSegmentSum,
};

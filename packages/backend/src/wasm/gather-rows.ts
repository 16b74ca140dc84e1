// GatherV2 for wasm as slice copies. The built-in kernel walks element by element (far slower: see
// the README's Benchmarks), and with batchDims > 0 it reads every batch after the
// first from the wrong place. Whole-slice memmoves are faster and correct; runs of consecutive
// indices are copied as one block.
// Shapes as tfjs's collectGatherOpShapeInfo views them: x [Bt, O, G, W], indices [Bt, I],
// out [Bt, O, I, W] with out[b, o, i, :] = x[b, o, indices[b, i], :].
// Axes: Bt batch (product of the first batchDims axes), O outer (axes before `axis`), G the gathered
// axis, W slice width (axes after `axis`), I indices per batch. The common table lookup is Bt = O = 1.
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { GatherV2Attrs, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackend, WasmKernelFix } from './wasm-backend.js';

/** A heap view whose elements are the tensor's elements, and the element offset of `info`. */
function heapView(backend: WasmBackend, info: TensorInfo): { heap: Int32Array | Uint8Array; offset: number } {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error('gather: tensor data is not on the wasm engine');
  const buffer = backend.wasm.HEAPU8.buffer;
  // Copies move raw bits: an int32 view serves float32 too, and (unlike a float32 view) copies
  // every bit pattern exactly, NaN payloads included.
  return info.dtype === 'bool'
    ? { heap: new Uint8Array(buffer), offset: data.memoryOffset }
    : { heap: new Int32Array(buffer), offset: data.memoryOffset >>> 2 };
}

function gatherSlices(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  if (!original) throw new Error('wasm has no built-in GatherV2 kernel to delegate to');
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const indices = inputs.indices!;
    const { axis, batchDims = 0 } = attrs as unknown as GatherV2Attrs;
    if ((x.dtype !== 'float32' && x.dtype !== 'int32' && x.dtype !== 'bool') || x.shape.length === 0) {
      return original({ inputs, backend, attrs }) as TensorInfo;
    }
    const parsedAxis = util.parseAxisParam(axis, x.shape)[0]!;
    const info = backend_util.segment_util.collectGatherOpShapeInfo(x, indices, parsedAxis, batchDims);
    const { batchSize, outerSize, dimSize, sliceSize } = info;
    const idx = backend.readSync(indices.dataId);
    const count = idx.length;
    for (let i = 0; i < count; i++) {
      const r = idx[i]!;
      if (!(r >= 0 && r < dimSize) || !Number.isInteger(r)) {
        const what = parsedAxis === 0 ? `${dimSize} rows` : `size ${dimSize} along axis ${parsedAxis}`;
        throw new Error(`gather: index ${r} (at position ${i} of the indices) is out of range for a tensor of ${what}`);
      }
    }
    const out = backend.makeOutput(info.outputShape, x.dtype);
    const perBatch = batchSize > 0 ? count / batchSize : 0;
    if (sliceSize === 0 || count === 0 || outerSize === 0) return out;
    // Views only after the allocation above: it may have grown (and detached) the heap.
    const { heap, offset: xBase } = heapView(backend, x);
    const outBase = heapView(backend, out).offset;
    for (let b = 0; b < batchSize; b++) {
      const ids = b * perBatch;
      for (let o = 0; o < outerSize; o++) {
        const src = xBase + ((b * outerSize + o) * dimSize) * sliceSize;
        const dst = outBase + ((b * outerSize + o) * perBatch) * sliceSize;
        for (let i = 0; i < perBatch; ) {
          let j = i + 1;
          while (j < perBatch && idx[ids + j] === idx[ids + j - 1]! + 1) j++;
          const from = src + idx[ids + i]! * sliceSize;
          const len = (j - i) * sliceSize;
          const to = dst + i * sliceSize;
          if (len < 16) for (let k = 0; k < len; k++) heap[to + k] = heap[from + k]!;
          else heap.copyWithin(to, from, from + len);
          i = j;
        }
      }
    }
    return out;
  };
}

export const gatherRowsFix: WasmKernelFix = {
  name: 'GatherV2 (slice copies, checked indices)',
  kernelName: tf.GatherV2,
  kernelFunc: gatherSlices,
};

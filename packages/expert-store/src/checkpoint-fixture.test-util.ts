// Deterministic arrays for checkpoint tests, shared by the test and its crashing child process.
import type { NamedArray } from './named-array.js';

/** A few tensors of several dtypes, about 150 KiB in all, values determined by `seed`. */
export function checkpointArrays(seed: number): NamedArray[] {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const f32 = (n: number) => Float32Array.from({ length: n }, () => next() * 2 - 1);
  return [
    { name: 'layer.u', dtype: 'F32', shape: [64, 256], data: f32(64 * 256) },
    { name: 'layer.v', dtype: 'F32', shape: [64, 256], data: f32(64 * 256) },
    { name: 'layer.opt.m', dtype: 'F32', shape: [32, 256], data: f32(32 * 256) },
    { name: 'layer.opt.steps', dtype: 'I32', shape: [64], data: Int32Array.from({ length: 64 }, () => Math.floor(next() * 100)) },
    { name: 'layer.half', dtype: 'F16', shape: [8, 8], data: Uint16Array.from({ length: 64 }, () => Math.floor(next() * 65536)) },
  ];
}

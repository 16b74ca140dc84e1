import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { engineHeap, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { FunctionBuilder, I32 } from '../wasm-emitter/wasm-emitter.js';
import { Rng } from '../rng.js';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { ENGINE_POOL_THREADS, threadsUnsupported, wasmEngineThreaded, wasmEngineThreads } from './threaded-wasm.js';

const require = createRequire(import.meta.url);

function randomMatrix(rng: Rng, rows: number, cols: number): Float32Array {
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) a[i] = rng.normal();
  return a;
}

/** Plain float64 product of row-major a (m x k) and b (k x n). */
function matMul64(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p]!;
      for (let j = 0; j < n; j++) c[i * n + j]! += x * b[p * n + j]!;
    }
  return c;
}

function product(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  return tf.tidy(() => tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n])).dataSync() as Float32Array);
}

describe('the threaded wasm engine in Node', () => {
  it('is supported by this Node (shared memory and wasm atomics)', () => {
    expect(threadsUnsupported()).toBeUndefined();
  });

  it('starts 2 threads, leaves no Node global patched, and computes what 1 thread and float64 do', async () => {
    const workerThreads = require('node:worker_threads') as { Worker: unknown };
    const os = require('node:os') as { cpus: unknown };
    const before = { worker: workerThreads.Worker, cpus: os.cpus, global: 'Worker' in globalThis };
    const rng = new Rng(Number(process.env.PEER_TEST_SEED ?? Date.now() % 2 ** 31));
    const [m, k, n] = [67, 300, 129];
    const a = randomMatrix(rng, m, k);
    const b = randomMatrix(rng, k, n);

    const one = await initBackend({ backend: 'wasm', threads: 1, log: false });
    expect(one.threads).toBe(1);
    expect(wasmEngineThreaded()).toBe(false);
    const single = product(a, b, m, k, n);

    const lines: string[] = [];
    const two = await initBackend({ backend: 'wasm', threads: 2, log: (l) => lines.push(l) });
    expect(two.threads).toBe(2);
    expect(two.threadsNote).toBeUndefined();
    expect(lines).toEqual(['[peer] backend: wasm via @tensorflow/tfjs-backend-wasm, 2 threads']);
    expect(wasmEngineThreaded()).toBe(true);
    // One pool of 2 threads (ours); the engine's XNNPACK pool keeps the calling thread only.
    expect(wasmEngineThreads()).toBe(2);
    expect(kernelPool()?.threads).toBe(2);
    expect(getThreadsCount()).toBe(ENGINE_POOL_THREADS);
    expect(ENGINE_POOL_THREADS).toBe(1);
    expect(workerThreads.Worker).toBe(before.worker);
    expect(os.cpus).toBe(before.cpus);
    expect('Worker' in globalThis).toBe(before.global);

    const threaded = product(a, b, m, k, n);
    const reference = matMul64(a, b, m, k, n);
    let worst = 0;
    for (let i = 0; i < reference.length; i++) {
      worst = Math.max(worst, Math.abs(threaded[i]! - reference[i]!) / (1 + Math.abs(reference[i]!)));
    }
    expect(worst).toBeLessThan(1e-4);
    // Every product sums each element over k in the same order, on any thread count (our kernel on the pool, XNNPACK on one).
    expect(Array.from(threaded)).toEqual(Array.from(single));
    expect(tf.memory().numTensors).toBe(0);
  });

  it('runs our own kernels on its shared heap', async () => {
    await initBackend({ backend: 'wasm', threads: 2, log: false });
    const heap = engineHeap()!;
    // double(dst, src, bytes): dst = src + src, 4 floats at a time.
    const f = new FunctionBuilder([I32, I32, I32]);
    const j = f.local(I32);
    f.forLoop(j, 2, 16, () => {
      f.get(0).get(j).add();
      f.get(1).get(j).add().v128Load().get(1).get(j).add().v128Load().f32x4Add();
      f.v128Store();
    });
    const kernel = kernelsOnHeap<{ double(dst: number, src: number, bytes: number): void }>(heap.memory, 'test/double', () => [
      { name: 'double', builder: f },
    ]);
    expect(kernel).not.toBeNull();
    const x = tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8]);
    const y = heap.output([8], 'float32');
    kernel!.double(heap.offsetOf(y), heap.offsetOf(x), 32);
    expect(Array.from(y.dataSync())).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    tf.dispose([x, y]);
  });

  it('an invalid thread count is one clear error', async () => {
    await expect(initBackend({ backend: 'wasm', threads: 0, log: false })).rejects.toThrow('threads must be a whole number >= 1, got 0');
    await expect(initBackend({ backend: 'wasm', threads: 1.5, log: false })).rejects.toThrow('got 1.5');
  });

  it('a process that ran the threaded engine exits by itself when its work ends', () => {
    const script = `
      import { initBackend } from ${JSON.stringify(fileURLToPath(new URL('../index.ts', import.meta.url)))};
      import * as tf from '@tensorflow/tfjs-core';
      const c = await initBackend({ backend: 'wasm', threads: 2, log: false });
      const y = tf.matMul(tf.ones([256, 256]), tf.ones([256, 256])).dataSync()[0];
      console.log(JSON.stringify({ threads: c.threads, y }));
    `;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.error).toBeUndefined();
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toEqual({ threads: 2, y: 256 });
  });
});

// Starts tfjs-backend-wasm's threaded SIMD build in Node. tfjs never does (its flag
// WASM_HAS_MULTITHREAD_SUPPORT is false in Node), because Emscripten starts its pthread workers from
// `blob:` URLs, which Node's worker_threads refuse. Here, only while the engine initializes:
// - `require('worker_threads').Worker` (read by Emscripten at that moment) becomes a class that runs
//   the packaged worker source with `eval: true`, its `URL.createObjectURL` answering the path of the
//   threaded build's script, which the worker then loads from disk;
// - `os.cpus()` reports two cores, because the C++ side caps its pool at half the logical cores it
//   sees.
// Both are restored before `startThreadedWasm` returns, and the `Worker` global Emscripten sets is
// removed. The pool's workers are unreferenced so that they never keep the process alive.
//
// The engine's own thread pool (XNNPACK's) is started with ONE thread: the threaded build is used
// for its shared heap, on which our kernel pool (kernel-pool.ts) runs every parallel pass, large
// products included (pooled-small-mat-mul.ts). Two pools on the same cores competed: XNNPACK's
// worker spins about 0.8 ms after each of its products, and a kernel-pool worker woken meanwhile
// waited for that core (backend README, "Threads").
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export type ThreadedStart = { ok: true; threads: number } | { ok: false; reason: string };

interface NodeWorker {
  unref(): void;
}

interface PThreadPool {
  runningWorkers: NodeWorker[];
  unusedWorkers: NodeWorker[];
}

const MULTITHREAD_FLAG = 'WASM_HAS_MULTITHREAD_SUPPORT';
/** Threads of the engine's own (XNNPACK) pool on the threaded build: the calling thread only. */
export const ENGINE_POOL_THREADS = 1;
// The priority tfjs-backend-wasm registers itself with.
const WASM_PRIORITY = 2;

// A module using a shared memory and an atomic load: validates only where wasm threads exist.
const THREADS_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 11, 1, 9, 0, 65, 0, 254, 16, 2, 0, 26, 11,
]);

/** Why this process cannot run wasm threads, or undefined when it can. */
export function threadsUnsupported(): string | undefined {
  if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available';
  const wasm = (globalThis as { WebAssembly?: { validate(b: Uint8Array): boolean } }).WebAssembly;
  if (!wasm?.validate(THREADS_PROBE)) return 'this WebAssembly has no threads (shared memory, atomics)';
  return undefined;
}

/** The source each pthread worker runs: the packaged worker, told where the threaded build lives. */
function pthreadWorkerSource(): string {
  const wasmOut = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
  const mainScript = join(wasmOut, 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(join(wasmOut, 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  // The packaged source is meant for a Blob: its strings hold raw newlines that must stay escaped.
  return (
    `URL.createObjectURL = () => ${JSON.stringify(mainScript)}; URL.revokeObjectURL = () => {};\n` +
    wasmWorkerContents.replace(/\n/g, '\\n')
  );
}

/** The pthread pool of the running wasm engine (threaded build only). */
function pthreadPool(): PThreadPool | undefined {
  const engine = (tf.engine() as unknown as { registry: Record<string, { wasm?: { PThread?: PThreadPool } } | undefined> }).registry.wasm;
  return engine?.wasm?.PThread;
}

/** Unreferences the engine's workers: a finished command exits even though the pool is idle, not ended. */
export function unrefEngineWorkers(): number {
  const pool = pthreadPool();
  if (!pool) return 0;
  for (const w of [...pool.runningWorkers, ...pool.unusedWorkers]) w.unref();
  return pool.runningWorkers.length;
}

/** The thread count the running threaded engine was started for (its kernel pool's), or undefined. */
let startedThreads: number | undefined;

/** The threads the running threaded engine serves (see `startThreadedWasm`); undefined when it is not running. */
export function wasmEngineThreads(): number | undefined {
  return wasmEngineThreaded() ? startedThreads : undefined;
}

/**
 * Makes `tf.setBackend('wasm')` start the threaded build for `threads` threads (>= 2) and runs it:
 * the engine's own pool keeps one thread and the kernel pool (`setKernelThreads`) gets `threads`.
 * The wasm engine must not be initialized yet (see `resetWasmEngine`). On failure the engine is left
 * uninitialized and the flag off, so the single-threaded build can start next.
 */
export async function startThreadedWasm(threads: number): Promise<ThreadedStart> {
  const unsupported = threadsUnsupported();
  if (unsupported) return { ok: false, reason: unsupported };
  let source: string;
  try {
    source = pthreadWorkerSource();
  } catch (err) {
    return { ok: false, reason: `cannot read the threaded build's worker (${err instanceof Error ? err.message : String(err)})` };
  }
  const workerThreads = require('node:worker_threads') as { Worker: new (code: string, options?: object) => unknown };
  const os = require('node:os') as { cpus(): unknown[] };
  const OriginalWorker = workerThreads.Worker;
  const originalCpus = os.cpus;
  const hadWorkerGlobal = Object.prototype.hasOwnProperty.call(globalThis, 'Worker');
  const workerGlobal = (globalThis as { Worker?: unknown }).Worker;

  class PthreadWorker extends (OriginalWorker as new (code: string, options?: object) => object) {
    constructor(url: unknown, options?: object) {
      if (typeof url === 'string' && url.startsWith('blob:')) URL.revokeObjectURL(url);
      // No execArgv: the pool runs plain CommonJS, whatever loaders or input type the main thread has.
      super(source, { ...options, eval: true, execArgv: [] });
    }
  }
  workerThreads.Worker = PthreadWorker;
  os.cpus = () => {
    const cpus = originalCpus.call(os);
    return Array.from({ length: 2 * ENGINE_POOL_THREADS }, (_, i) => cpus[i % Math.max(1, cpus.length)]);
  };
  tf.env().set(MULTITHREAD_FLAG, true);
  setThreadsCount(ENGINE_POOL_THREADS);
  let started = false;
  let failure = 'the engine failed to initialize';
  try {
    // tfjs reports a failed backend factory on console.warn; the reason goes to our one line instead.
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      failure = String(args.find((a) => typeof a === 'string' && !a.startsWith('Initialization of backend')) ?? failure)
        .split('\n')[0]!
        .slice(0, 200);
    };
    try {
      started = await tf.setBackend('wasm');
    } finally {
      console.warn = warn;
    }
  } catch (err) {
    failure = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  } finally {
    workerThreads.Worker = OriginalWorker;
    os.cpus = originalCpus;
    if (hadWorkerGlobal) (globalThis as { Worker?: unknown }).Worker = workerGlobal;
    else delete (globalThis as { Worker?: unknown }).Worker;
  }
  if (!started) {
    resetWasmEngine();
    return { ok: false, reason: failure };
  }
  const actual = getThreadsCount();
  unrefEngineWorkers();
  if (actual !== ENGINE_POOL_THREADS) {
    resetWasmEngine();
    return { ok: false, reason: `the engine's pool started ${actual} threads instead of ${ENGINE_POOL_THREADS}` };
  }
  startedThreads = threads;
  return { ok: true, threads };
}

/** Whether the wasm engine has been initialized (without initializing it, as `tf.findBackend` would). */
export function wasmEngineStarted(): boolean {
  return 'wasm' in (tf.engine() as unknown as { registry: Record<string, unknown> }).registry;
}

/** Whether the running wasm engine is the threaded build. */
export function wasmEngineThreaded(): boolean {
  return pthreadPool() !== undefined;
}

/**
 * Ends the wasm engine (its workers too) and registers its factory again, so that the next
 * `setBackend('wasm')` starts a fresh engine with the current flags. Tensors on the old engine are lost:
 * callers check that there are none.
 */
export function resetWasmEngine(): void {
  const factory = tf.findBackendFactory('wasm');
  startedThreads = undefined;
  tf.env().set(MULTITHREAD_FLAG, false);
  setThreadsCount(-1);
  if (!factory) return;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', factory, WASM_PRIORITY);
}

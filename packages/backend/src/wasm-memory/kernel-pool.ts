// A pool of worker threads that run our own WebAssembly kernels on a shared memory (an arena made
// while the pool runs, or the threaded engine's heap), so that one memory-bound pass is split over
// every core. A pass is a list of calls of one kernel function, one per thread, on disjoint parts of
// its output: the caller's thread runs the first, the workers the others, and `run` returns when
// all are done. Each output element is computed by one call in the same order as on one thread, so
// the result does not depend on the thread count.
//
// Workers start once per process (`setKernelThreads`), are unreferenced (they never keep the process
// alive), and wait on an Atomics word between passes; calls reach them over a MessagePort read
// synchronously (receiveMessageOnPort), so a pass needs no turn of either event loop.
import { createRequire } from 'node:module';
import { isSharedMemory, kernelModule } from './engine-heap.js';
import type { FunctionBuilder } from '../wasm-emitter/wasm-emitter.js';
import type { WasmMemory, WasmModule } from '../wasm-emitter/wasm-api.js';

const require = createRequire(import.meta.url);

interface NodeWorker {
  unref(): void;
  terminate(): Promise<number>;
}
interface NodePort {
  postMessage(message: unknown): void;
  unref(): void;
  close(): void;
}
interface WorkerThreads {
  Worker: new (code: string, options: object) => NodeWorker;
  MessageChannel: new () => { port1: NodePort; port2: NodePort };
  receiveMessageOnPort(port: NodePort): { message: unknown } | undefined;
}

// Control words (Int32Array over a SharedArrayBuffer).
const GENERATION = 0; // bumped after each batch of messages; workers wait on it
const DONE = 1; // calls finished, cumulative
const FAILED = 2; // set when a call threw (its message is on the worker's port)
const READY = 3; // workers that have started

const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { control, port } = workerData;
const instances = new Map();
Atomics.add(control, ${READY}, 1);
Atomics.notify(control, ${READY});
let seen = 0;
for (;;) {
  Atomics.wait(control, ${GENERATION}, seen);
  seen = Atomics.load(control, ${GENERATION});
  let received;
  while ((received = receiveMessageOnPort(port)) !== undefined) {
    const m = received.message;
    try {
      if (m.type === 'load') instances.set(m.id, new WebAssembly.Instance(m.module, { env: { memory: m.memory } }).exports);
      else instances.get(m.id)[m.fn](...m.args);
    } catch (err) {
      port.postMessage(String((err && err.stack) || err));
      Atomics.store(control, ${FAILED}, 1);
    }
    if (m.type === 'call') {
      Atomics.add(control, ${DONE}, 1);
      Atomics.notify(control, ${DONE});
    }
  }
}
`;

/** How long `start` waits for the workers to come up, and a pass for its calls, before giving up. */
const START_TIMEOUT_MS = 30_000;

export class KernelPool {
  private readonly control = new Int32Array(new SharedArrayBuffer(16));
  private readonly workers: NodeWorker[] = [];
  private readonly ports: NodePort[] = [];
  private readonly ids = new WeakMap<WasmMemory, Map<string, number>>();
  private nextId = 1;
  private posted = 0;

  private constructor(readonly threads: number) {}

  /** A pool of `threads` threads (the caller's and threads - 1 workers), or the reason it cannot start. */
  static start(threads: number): KernelPool | string {
    if (!Number.isInteger(threads) || threads < 2) return `a kernel pool needs at least 2 threads, got ${threads}`;
    if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available';
    const wt = require('node:worker_threads') as WorkerThreads;
    const pool = new KernelPool(threads);
    for (let w = 1; w < threads; w++) {
      const { port1, port2 } = new wt.MessageChannel();
      const worker = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        execArgv: [],
        workerData: { control: pool.control, port: port2 },
        transferList: [port2],
      });
      worker.unref();
      port1.unref();
      pool.workers.push(worker);
      pool.ports.push(port1);
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const ready = Atomics.load(pool.control, READY);
      if (ready >= threads - 1) return pool;
      if (Date.now() > deadline) {
        pool.end();
        return `${ready} of ${threads - 1} kernel workers started within ${START_TIMEOUT_MS / 1000} s`;
      }
      Atomics.wait(pool.control, READY, ready, 100);
    }
  }

  /** Ends the workers (pending passes are not waited for). */
  end(): void {
    for (const w of this.workers) void w.terminate();
    for (const p of this.ports) p.close();
    this.workers.length = 0;
    this.ports.length = 0;
  }

  /**
   * Runs `fn` of kernel module `key` (see `kernelsOnHeap`) on `memory` once per entry of `calls`, in
   * parallel: calls[0] on this thread, the others on the workers (at most `threads` calls). Throws
   * when a call throws anywhere.
   */
  run(memory: WasmMemory, key: string, functions: () => { name: string; builder: FunctionBuilder }[], fn: string, calls: readonly number[][]): void {
    if (calls.length > this.threads) throw new Error(`KernelPool.run: ${calls.length} calls for ${this.threads} threads`);
    if (!isSharedMemory(memory)) throw new Error('KernelPool.run: the memory is not shared');
    const local = kernelModule(memory, key, functions);
    if (!local) throw new Error(`KernelPool.run: kernel module '${key}' cannot run here`);
    const id = this.idFor(memory, key, local.module);
    for (let c = 1; c < calls.length; c++) this.ports[c - 1]!.postMessage({ type: 'call', id, fn, args: calls[c] });
    const expected = this.posted + calls.length - 1;
    this.posted = expected;
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
    let localError: unknown;
    const first = calls[0];
    if (first) {
      try {
        (local.exports[fn] as (...args: number[]) => void)(...first);
      } catch (err) {
        localError = err;
      }
    }
    for (;;) {
      const done = Atomics.load(this.control, DONE);
      if (done >= expected) break;
      Atomics.wait(this.control, DONE, done, START_TIMEOUT_MS);
    }
    if (localError) throw localError;
    if (Atomics.load(this.control, FAILED)) {
      Atomics.store(this.control, FAILED, 0);
      const wt = require('node:worker_threads') as WorkerThreads;
      const messages = this.ports.map((p) => wt.receiveMessageOnPort(p)?.message).filter((m) => m !== undefined);
      throw new Error(`KernelPool.run: ${fn} failed on a worker: ${String(messages[0]).split('\n')[0]}`);
    }
  }

  /** The id the workers know (memory, key) by, loading the module into every worker the first time. */
  private idFor(memory: WasmMemory, key: string, module: WasmModule): number {
    let byKey = this.ids.get(memory);
    if (!byKey) this.ids.set(memory, (byKey = new Map()));
    const known = byKey.get(key);
    if (known !== undefined) return known;
    const id = this.nextId++;
    for (const port of this.ports) port.postMessage({ type: 'load', id, module, memory });
    byKey.set(key, id);
    return id;
  }
}

let pool: KernelPool | undefined;
let poolNote: string | undefined;

/**
 * Sets how many threads our kernels use (1 ends the pool). Returns undefined when the pool runs with
 * that many, else the reason it does not (the kernels then run on one thread).
 */
export function setKernelThreads(threads: number): string | undefined {
  if (pool?.threads === threads) return undefined;
  pool?.end();
  pool = undefined;
  poolNote = undefined;
  if (threads <= 1) return undefined;
  const started = KernelPool.start(threads);
  if (typeof started === 'string') poolNote = started;
  else pool = started;
  return poolNote;
}

/** The running kernel pool, if any (see `setKernelThreads`). */
export function kernelPool(): KernelPool | undefined {
  return pool;
}

/**
 * `count` items split into at most `parts` contiguous ranges of near-equal size, as [start, end)
 * pairs (no empty range).
 */
export function splitRange(count: number, parts: number): [number, number][] {
  const n = Math.max(1, Math.min(parts, count));
  const out: [number, number][] = [];
  for (let p = 0; p < n; p++) {
    const start = Math.floor((p * count) / n);
    const end = Math.floor(((p + 1) * count) / n);
    if (end > start) out.push([start, end]);
  }
  return out;
}

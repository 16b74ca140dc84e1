// A pool of worker threads that run our own WebAssembly kernels on a shared memory (an arena made
// while the pool runs, or the threaded engine's heap), so that one memory-bound pass is split over
// every core. A pass is a list of calls of one kernel function on disjoint parts of its output; the
// threads (the caller's and the workers) claim calls one at a time until none is left, and `run`
// returns when all are done. Each output element is computed by one call in the same order as on one
// thread, so the result depends neither on the thread count nor on which thread ran which call.
//
// A pass is handed out in shared memory, not in messages: the caller writes the calls' arguments
// into a shared table, then publishes the pass in one word (CLAIM: call count and next call), which
// the threads claim from with compare-and-exchange. A thread that claims a call reads the pass only
// after its claim succeeded, and the pass cannot end before that call is done, so a thread that
// wakes late never runs a call of a pass that is over. Workers spin a short while after a pass
// before they sleep on an Atomics word, because the next pass usually follows within microseconds
// (a sleeping thread takes about 0.1 ms to wake); the caller spins as long before it sleeps waiting
// for the last call. Messages carry only what is rare: kernel modules to load, and errors.
//
// Workers start once per process (`setKernelThreads`) and are unreferenced (they never keep the
// process alive).
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

/** The most calls one pass may have, and the most arguments a call may have. */
export const MAX_POOL_CALLS = 1024;
export const MAX_CALL_ARGS = 16;
/** How long a worker spins for the next pass, and the caller for the last call, before sleeping. */
const DEFAULT_SPIN_MS = 0.5;

// Control words (Int32Array over a SharedArrayBuffer).
const GENERATION = 0; // bumped for each pass; sleeping workers wait on it
const CLAIM = 1; // (calls << 16) | next call of the current pass
const DONE = 2; // calls of the current pass finished
const FUNCTION = 3; // the pass's function id
const ARG_COUNT = 4; // arguments per call
const FAILED = 5; // set when a call threw on a worker (its message is on the worker's port)
const READY = 6; // workers that have started
const MESSAGES = 7; // messages posted to every worker (modules and functions to load)
const SPIN_US = 8; // how long a worker spins, in microseconds
const CONTROL_WORDS = 9;

const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { control, args, port } = workerData;
const instances = new Map();
const functions = [];
const argArrays = [];
for (let n = 0; n <= ${MAX_CALL_ARGS}; n++) argArrays.push(new Array(n).fill(0));
let read = 0;
function readMessages() {
  let received;
  while ((received = receiveMessageOnPort(port)) !== undefined) {
    const m = received.message;
    read++;
    if (m.type === 'load') instances.set(m.id, new WebAssembly.Instance(m.module, { env: { memory: m.memory } }).exports);
    else functions[m.fn] = instances.get(m.id)[m.name];
  }
}
function claimCalls() {
  for (;;) {
    const claim = Atomics.load(control, ${CLAIM});
    if ((claim & 0xffff) >= claim >>> 16) return;
    if (Atomics.compareExchange(control, ${CLAIM}, claim, claim + 1) !== claim) continue;
    // The pass is ours to read until this call is counted done.
    if (read < Atomics.load(control, ${MESSAGES})) readMessages();
    const n = Atomics.load(control, ${ARG_COUNT});
    const a = argArrays[n];
    const at = (claim & 0xffff) * ${MAX_CALL_ARGS};
    for (let i = 0; i < n; i++) a[i] = args[at + i];
    try {
      functions[Atomics.load(control, ${FUNCTION})].apply(null, a);
    } catch (err) {
      port.postMessage(String((err && err.stack) || err));
      Atomics.store(control, ${FAILED}, 1);
    }
    Atomics.add(control, ${DONE}, 1);
    Atomics.notify(control, ${DONE});
  }
}
Atomics.add(control, ${READY}, 1);
Atomics.notify(control, ${READY});
let seen = Atomics.load(control, ${GENERATION});
for (;;) {
  const spinUntil = performance.now() + Atomics.load(control, ${SPIN_US}) / 1000;
  while (Atomics.load(control, ${GENERATION}) === seen && performance.now() < spinUntil);
  Atomics.wait(control, ${GENERATION}, seen);
  seen = Atomics.load(control, ${GENERATION});
  claimCalls();
}
`;

/** How long `start` waits for the workers to come up, and a pass for its calls, before giving up. */
const START_TIMEOUT_MS = 30_000;

export class KernelPool {
  private readonly control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_WORDS));
  private readonly args = new Float64Array(new SharedArrayBuffer(8 * MAX_POOL_CALLS * MAX_CALL_ARGS));
  private readonly workers: NodeWorker[] = [];
  private readonly ports: NodePort[] = [];
  /** Module ids per memory and key, and function ids per module id and name. */
  private readonly ids = new WeakMap<WasmMemory, Map<string, number>>();
  private readonly functionIds = new Map<string, number>();
  private readonly localFunctions: ((...args: number[]) => void)[] = [];
  private nextId = 1;
  private spinMs = DEFAULT_SPIN_MS;

  private constructor(readonly threads: number) {}

  /** A pool of `threads` threads (the caller's and threads - 1 workers), or the reason it cannot start. */
  static start(threads: number): KernelPool | string {
    if (!Number.isInteger(threads) || threads < 2) return `a kernel pool needs at least 2 threads, got ${threads}`;
    if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available';
    const wt = require('node:worker_threads') as WorkerThreads;
    const pool = new KernelPool(threads);
    pool.setSpin(DEFAULT_SPIN_MS);
    for (let w = 1; w < threads; w++) {
      const { port1, port2 } = new wt.MessageChannel();
      const worker = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        execArgv: [],
        workerData: { control: pool.control, args: pool.args, port: port2 },
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

  /**
   * How long (ms) workers spin for the next pass, and the caller for a pass's last call, before they
   * sleep (default 0.5; 0 sleeps at once).
   */
  setSpin(ms: number): void {
    if (!(ms >= 0 && ms <= 1000)) throw new Error(`KernelPool.setSpin: ms must be in [0, 1000], got ${ms}`);
    this.spinMs = ms;
    Atomics.store(this.control, SPIN_US, Math.round(ms * 1000));
  }

  /** Ends the workers (pending passes are not waited for). */
  end(): void {
    for (const w of this.workers) void w.terminate();
    for (const p of this.ports) p.close();
    this.workers.length = 0;
    this.ports.length = 0;
  }

  /**
   * Runs `fn` of kernel module `key` (see `kernelsOnHeap`) on `memory` once per entry of `calls`
   * (each on disjoint outputs), spread over the pool's threads, this one included; returns when all
   * are done. Throws when a call throws anywhere.
   */
  run(memory: WasmMemory, key: string, functions: () => { name: string; builder: FunctionBuilder }[], fn: string, calls: readonly number[][]): void {
    if (calls.length > MAX_POOL_CALLS) throw new Error(`KernelPool.run: ${calls.length} calls, at most ${MAX_POOL_CALLS} in one pass`);
    if (!isSharedMemory(memory)) throw new Error('KernelPool.run: the memory is not shared');
    const local = kernelModule(memory, key, functions);
    if (!local) throw new Error(`KernelPool.run: kernel module '${key}' cannot run here`);
    const count = calls.length;
    if (count === 0) return;
    const argCount = calls[0]!.length;
    if (argCount > MAX_CALL_ARGS) throw new Error(`KernelPool.run: ${fn} has ${argCount} arguments, at most ${MAX_CALL_ARGS}`);
    const fnId = this.functionId(memory, key, local, fn);
    const control = this.control;
    for (let c = 0; c < count; c++) {
      const call = calls[c]!;
      if (call.length !== argCount) throw new Error(`KernelPool.run: call ${c} of ${fn} has ${call.length} arguments, call 0 has ${argCount}`);
      this.args.set(call, c * MAX_CALL_ARGS);
    }
    Atomics.store(control, DONE, 0);
    Atomics.store(control, FUNCTION, fnId);
    Atomics.store(control, ARG_COUNT, argCount);
    // Publishing the claim word opens the pass.
    Atomics.store(control, CLAIM, count << 16);
    Atomics.add(control, GENERATION, 1);
    Atomics.notify(control, GENERATION);
    const kernel = this.localFunctions[fnId]!;
    let localError: unknown;
    for (;;) {
      const claim = Atomics.load(control, CLAIM);
      const c = claim & 0xffff;
      if (c >= count) break;
      if (Atomics.compareExchange(control, CLAIM, claim, claim + 1) !== claim) continue;
      try {
        kernel(...calls[c]!);
      } catch (err) {
        localError ??= err;
      }
      Atomics.add(control, DONE, 1);
    }
    this.waitForCalls(count);
    const workerError = Atomics.load(control, FAILED) ? this.takeWorkerErrors()[0] : undefined;
    if (localError) throw localError;
    if (workerError !== undefined) throw new Error(`KernelPool.run: ${fn} failed on a worker: ${workerError.split('\n')[0]}`);
  }

  /** The errors the workers posted in this pass (all read, so that none is left for the next). */
  private takeWorkerErrors(): string[] {
    Atomics.store(this.control, FAILED, 0);
    const wt = require('node:worker_threads') as WorkerThreads;
    const errors: string[] = [];
    for (const port of this.ports) {
      for (let m = wt.receiveMessageOnPort(port); m !== undefined; m = wt.receiveMessageOnPort(port)) errors.push(String(m.message));
    }
    return errors;
  }

  /** Spins, then sleeps, until `count` calls of the pass are done. */
  private waitForCalls(count: number): void {
    const control = this.control;
    if (Atomics.load(control, DONE) >= count) return;
    const spinUntil = performance.now() + this.spinMs;
    while (Atomics.load(control, DONE) < count && performance.now() < spinUntil);
    for (;;) {
      const done = Atomics.load(control, DONE);
      if (done >= count) return;
      if (Atomics.wait(control, DONE, done, START_TIMEOUT_MS) === 'timed-out') {
        throw new Error(`KernelPool.run: ${count - done} of ${count} calls not done after ${START_TIMEOUT_MS / 1000} s`);
      }
    }
  }

  /** The id the threads know `fn` of (memory, key) by, loading the module into every worker the first time. */
  private functionId(memory: WasmMemory, key: string, local: { module: WasmModule; exports: Record<string, unknown> }, fn: string): number {
    const id = this.moduleId(memory, key, local.module);
    const name = `${id}:${fn}`;
    const known = this.functionIds.get(name);
    if (known !== undefined) return known;
    const f = local.exports[fn];
    if (typeof f !== 'function') throw new Error(`KernelPool.run: kernel module '${key}' has no function '${fn}'`);
    const fnId = this.localFunctions.length;
    this.localFunctions.push(f as (...args: number[]) => void);
    this.functionIds.set(name, fnId);
    this.post({ type: 'function', fn: fnId, id, name: fn });
    return fnId;
  }

  private moduleId(memory: WasmMemory, key: string, module: WasmModule): number {
    let byKey = this.ids.get(memory);
    if (!byKey) this.ids.set(memory, (byKey = new Map()));
    const known = byKey.get(key);
    if (known !== undefined) return known;
    const id = this.nextId++;
    this.post({ type: 'load', id, module, memory });
    byKey.set(key, id);
    return id;
  }

  /** Posts `message` to every worker; they read it before their next call. */
  private post(message: object): void {
    for (const port of this.ports) port.postMessage(message);
    Atomics.add(this.control, MESSAGES, 1);
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

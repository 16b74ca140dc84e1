// Chooses the tfjs engine once per process and prepares it for training.
// Importing '@tensorflow/tfjs' registers every gradient and the cpu engine on the shared tfjs-core;
// '@tensorflow/tfjs-core' alone ships no gradients in its Node bundle.
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { installHeapGuard } from './heap-guard.js';
import { installWasmFixes, uninstallWasmFixes } from './wasm/install-wasm-fixes.js';
import { resetWasmEngine, startThreadedWasm, wasmEngineStarted, wasmEngineThreaded, wasmEngineThreads } from './wasm/threaded-wasm.js';
import { setKernelThreads } from './wasm-memory/kernel-pool.js';
import { adapterName } from './webgpu/adapter-probe.js';
import { mayHaveHardwareGpu } from './webgpu/gpu-device-hint.js';
import { ALLOW_FALLBACK_ENV, startWebgpu } from './webgpu/webgpu-engine.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu' | 'webgpu';
export type BackendRequest = BackendName | 'auto';

export const BACKEND_NAMES: readonly BackendRequest[] = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgpu'];

export interface InitBackendOptions {
  /**
   * Which engine to run; `auto` tries tensorflow (GPU, then CPU build), webgpu (only on a hardware
   * adapter; `PEER_WEBGPU_PROBE=0` skips it), wasm, cpu in that order.
   */
  backend?: BackendRequest;
  /**
   * Let an explicit `webgpu` request run on a software adapter (SwiftShader, llvmpipe/lavapipe), e.g.
   * for tests. Default: the environment variable `PEER_WEBGPU_ALLOW_FALLBACK=1`. `auto` never does.
   */
  allowFallbackAdapter?: boolean;
  /** Where to report the choice; `false` keeps quiet. Default: one line on stderr. */
  log?: ((line: string) => void) | false;
  /** Install the wasm kernel fixes (default true); `false` restores the built-in kernels (for benchmarks). */
  wasmFixes?: boolean;
  /** Heap budget for the wasm engine in bytes (default 3.5 GiB); see `setHeapBudget`. */
  heapBudgetBytes?: number;
  /**
   * Threads of the wasm engine (default 1: the single-threaded SIMD build, as before). More than one
   * starts tfjs's threaded SIMD build; where it cannot start, the single-threaded build runs and the
   * log line says why. Changing the count of a running wasm engine restarts it, which needs no live
   * tensors. Other engines ignore it.
   */
  threads?: number;
}

export interface SkippedBackend {
  backend: string;
  reason: string;
}

export interface BackendChoice {
  /** The engine now running. */
  backend: BackendName;
  /** The package that provides it (e.g. `@tensorflow/tfjs-node-gpu`). */
  provider: string;
  /** Engines tried before it, each with the reason it was not used. */
  skipped: SkippedBackend[];
  /** Wasm kernel fixes installed (empty on other engines). */
  fixes: string[];
  /** Threads of the wasm engine (absent on other engines). */
  threads?: number;
  /** Why the wasm engine runs fewer threads than requested (absent when it runs them all). */
  threadsNote?: string;
}

/** The engine cannot be used; `message` is one line meant for the user. */
export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: string,
    readonly skipped: SkippedBackend[],
  ) {
    super(`backend '${backend}' is not available: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
    this.name = 'BackendUnavailableError';
  }
}

const NATIVE_PROVIDERS = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return (text.split('\n').find((l) => l.trim() !== '') ?? text).trim().slice(0, 300);
}

/**
 * Why a native provider cannot load, checked before importing it: a package installed without its
 * binding (pnpm skips the script that downloads libtensorflow) would otherwise register half of its
 * kernels before throwing.
 */
function nativeProblem(provider: string): string | undefined {
  let pkgDir: string;
  try {
    pkgDir = dirname(createRequire(import.meta.url).resolve(`${provider}/package.json`));
  } catch {
    return 'not installed';
  }
  const lib = join(pkgDir, 'lib');
  const hasBinding =
    existsSync(lib) &&
    readdirSync(lib).some((d) => d.startsWith('napi-v') && existsSync(join(lib, d, 'tfjs_binding.node')));
  return hasBinding
    ? undefined
    : `installed without its native binding (its install script, which downloads libtensorflow, did not run; see \`pnpm rebuild ${provider}\`)`;
}

async function tryNative(skipped: SkippedBackend[]): Promise<string | undefined> {
  for (const provider of NATIVE_PROVIDERS) {
    const problem = nativeProblem(provider);
    if (problem) {
      skipped.push({ backend: provider, reason: problem });
      continue;
    }
    try {
      await import(provider);
      if (!tf.findBackendFactory('tensorflow')) throw new Error('the package loaded but registered no "tensorflow" engine');
      if (!(await tf.setBackend('tensorflow'))) throw new Error('the "tensorflow" engine failed to initialize');
      return provider;
    } catch (err) {
      const code = (err as { code?: string }).code;
      const reason =
        code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
          ? 'not installed'
          : `cannot load its native binding (${firstLine(err)})`;
      skipped.push({ backend: provider, reason });
    }
  }
  return undefined;
}

async function trySet(name: 'wasm' | 'cpu', skipped: SkippedBackend[]): Promise<boolean> {
  try {
    if (await tf.setBackend(name)) return true;
    skipped.push({ backend: name, reason: 'failed to initialize' });
  } catch (err) {
    skipped.push({ backend: name, reason: firstLine(err) });
  }
  return false;
}

let current: BackendChoice | undefined;

/** The choice made by the last `initBackend`, if any. */
export function currentBackend(): BackendChoice | undefined {
  return current;
}

/**
 * Selects and prepares the engine. Safe to call again: the same request returns the same choice.
 * Throws `BackendUnavailableError` when an explicitly requested engine cannot run.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendChoice> {
  const request = options.backend ?? 'auto';
  if (!BACKEND_NAMES.includes(request)) {
    throw new Error(`unknown backend '${String(request)}': expected one of ${BACKEND_NAMES.join(', ')}`);
  }
  const requestedThreads = options.threads ?? 1;
  if (!Number.isInteger(requestedThreads) || requestedThreads < 1) {
    throw new Error(`threads must be a whole number >= 1, got ${String(options.threads)}`);
  }
  const log = options.log === false ? undefined : (options.log ?? ((l: string) => process.stderr.write(`${l}\n`)));
  const skipped: SkippedBackend[] = [];
  let backend: BackendName | undefined;
  let provider = '';
  let onAdapter = '';

  if (request === 'auto' || request === 'tensorflow') {
    const native = await tryNative(skipped);
    if (native) {
      backend = 'tensorflow';
      provider = native;
    }
  }
  // `auto` considers webgpu where a GPU device may exist (or PEER_WEBGPU_PROBE=1 says so), and never
  // settles for a software adapter. Without a GPU device it never loads Dawn.
  if (!backend && (request === 'webgpu' || (request === 'auto' && autoProbesWebgpu()))) {
    const allowFallbackAdapter =
      request === 'webgpu' && (options.allowFallbackAdapter ?? process.env[ALLOW_FALLBACK_ENV] === '1');
    const started = await startWebgpu({ allowFallbackAdapter });
    if (started.ok) {
      backend = 'webgpu';
      provider = '@tensorflow/tfjs-backend-webgpu';
      onAdapter = ` on ${adapterName(started.info)}`;
    } else {
      skipped.push({ backend: 'webgpu', reason: started.reason });
    }
  }
  let threads: number | undefined;
  let threadsNote: string | undefined;
  if (!backend && (request === 'auto' || request === 'wasm')) {
    const started = await startWasm(requestedThreads, skipped);
    if (started) {
      backend = 'wasm';
      provider = '@tensorflow/tfjs-backend-wasm';
      threads = started.threads;
      threadsNote = started.note;
    }
  }
  if (!backend && (request === 'auto' || request === 'cpu')) {
    if (await trySet('cpu', skipped)) {
      backend = 'cpu';
      provider = '@tensorflow/tfjs-backend-cpu';
    }
  }
  if (!backend) throw new BackendUnavailableError(request, skipped);

  let fixes: string[] = [];
  if (backend === 'wasm') {
    // Our own kernels split their passes over a worker pool of the same size.
    const poolNote = setKernelThreads(requestedThreads);
    if (poolNote) threadsNote = threadsNote ? `${threadsNote}; ${poolNote}` : `our kernels run on one thread: ${poolNote}`;
    if (options.wasmFixes !== false) fixes = installWasmFixes();
    else uninstallWasmFixes();
    installHeapGuard(options.heapBudgetBytes);
  }
  current = { backend, provider, skipped, fixes };
  if (threads !== undefined) current.threads = threads;
  if (threadsNote !== undefined) current.threadsNote = threadsNote;
  if (log) {
    const why = skipped.length ? ` (skipped ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')})` : '';
    // The line stays as before for the default single thread.
    const onThreads =
      threads === undefined || (threads === 1 && requestedThreads === 1)
        ? ''
        : `, ${threads} thread${threads === 1 ? '' : 's'}${threadsNote ? ` (${requestedThreads} requested: ${threadsNote})` : ''}`;
    log(`[peer] backend: ${backend} via ${provider}${onAdapter}${onThreads}${why}`);
  }
  return current;
}

/** The thread count of an initialized wasm engine, or undefined when it has not started yet. */
function runningWasmThreads(): number | undefined {
  if (!wasmEngineStarted()) return undefined;
  return wasmEngineThreaded() ? (wasmEngineThreads() ?? 1) : 1;
}

/**
 * Runs the wasm engine with `threads` threads: the threaded build for more than one, falling back to
 * the single-threaded build with a note saying why. A running engine with another count is restarted
 * when no tensors are alive (they would be lost), otherwise kept with a note.
 */
async function startWasm(threads: number, skipped: SkippedBackend[]): Promise<{ threads: number; note?: string } | undefined> {
  const running = runningWasmThreads();
  let note: string | undefined;
  if (running !== undefined && running !== threads) {
    const live = tf.memory().numTensors;
    if (live > 0) {
      note = `the running wasm engine keeps its ${running} thread${running === 1 ? '' : 's'} while ${live} tensors are alive`;
      return (await trySet('wasm', skipped)) ? { threads: running, note } : undefined;
    }
    resetWasmEngine();
  } else if (running === threads) {
    return (await trySet('wasm', skipped)) ? { threads } : undefined;
  }
  if (threads > 1) {
    const started = await startThreadedWasm(threads);
    if (started.ok) return { threads };
    note = `the threaded build cannot start: ${started.reason}`;
  }
  return (await trySet('wasm', skipped)) ? { threads: 1, ...(note ? { note } : {}) } : undefined;
}

/** Whether `auto` tries webgpu: where a GPU may exist (`PEER_WEBGPU_PROBE=1` / `0` force the answer). */
function autoProbesWebgpu(env: NodeJS.ProcessEnv = process.env): boolean {
  return mayHaveHardwareGpu(env);
}

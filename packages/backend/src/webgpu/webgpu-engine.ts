// The WebGPU engine: tfjs-backend-webgpu on the adapter that Dawn (the `webgpu` package) finds.
// Dawn is loaded only here, only when the engine is requested or `auto` probes for it.
import * as tf from '@tensorflow/tfjs-core';
import {
  adapterName,
  defaultProbeDeps,
  firstLine,
  probeAdapter,
  TFJS_WEBGPU_PACKAGE,
  type DawnAdapter,
  type DawnGpu,
  type ProbeDeps,
  type WebgpuAdapterInfo,
} from './adapter-probe.js';

/** `PEER_WEBGPU_ALLOW_FALLBACK=1` lets an explicit `webgpu` request run on a software adapter. */
export const ALLOW_FALLBACK_ENV = 'PEER_WEBGPU_ALLOW_FALLBACK';

export interface StartWebgpuOptions {
  /** Accept a software adapter (SwiftShader, llvmpipe/lavapipe); `auto` never does. */
  allowFallbackAdapter: boolean;
  deps?: ProbeDeps;
}

export type WebgpuStart = { ok: true; info: WebgpuAdapterInfo } | { ok: false; reason: string };

interface RunningEngine {
  // Held so that Dawn's instance lives as long as the device tfjs uses.
  gpu: DawnGpu;
  info: WebgpuAdapterInfo;
}

let running: RunningEngine | undefined;

/** The adapter the webgpu engine runs on, once it has started in this process. */
export function webgpuAdapterInfo(): WebgpuAdapterInfo | undefined {
  return running ? { ...running.info } : undefined;
}

type WebGPUBackendClass = new (device: unknown, adapterInfo?: unknown) => tf.KernelBackend;

/** The limits tfjs-backend-webgpu's own factory raises to the adapter's (it needs large bindings). */
const RAISED_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupSizeX',
  'maxComputeInvocationsPerWorkgroup',
] as const;

/** Puts `navigator.gpu` (all tfjs-backend-webgpu checks) and Dawn's constants on globalThis; returns the undo. */
function installGlobals(gpu: DawnGpu, globals: object): () => void {
  const g = globalThis as Record<string, unknown>;
  const added = Object.keys(globals).filter((k) => !(k in g));
  for (const k of added) g[k] = (globals as Record<string, unknown>)[k];
  const nav = g.navigator as Record<string, unknown> | undefined;
  let undoNavigator: () => void;
  if (nav && typeof nav === 'object' && Object.isExtensible(nav) && !('gpu' in nav)) {
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true });
    undoNavigator = () => delete nav.gpu;
  } else {
    const previous = Object.getOwnPropertyDescriptor(g, 'navigator');
    Object.defineProperty(g, 'navigator', { value: { gpu }, configurable: true, writable: true });
    undoNavigator = () => {
      if (previous) Object.defineProperty(g, 'navigator', previous);
      else delete g.navigator;
    };
  }
  return () => {
    undoNavigator();
    for (const k of added) delete g[k];
  };
}

/**
 * Our factory, not the package's: the package's asks navigator for an adapter again (it could get
 * another one than the probe checked) and registers itself only at its first import, so after a
 * failed start it could not be registered again.
 */
function registerFactory(adapter: DawnAdapter, WebGPUBackend: WebGPUBackendClass): void {
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => {
    const requiredLimits: Record<string, number> = {};
    for (const k of RAISED_LIMITS) {
      const v = adapter.limits[k];
      if (v !== undefined) requiredLimits[k] = v;
    }
    const requiredFeatures = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    return new WebGPUBackend(device, adapter.info);
  });
}

/**
 * Probes the adapter, then registers and selects the 'webgpu' tfjs engine. On any failure nothing
 * stays registered and the engine in use is unchanged; the reason is one line.
 */
export async function startWebgpu(options: StartWebgpuOptions): Promise<WebgpuStart> {
  if (running && tf.findBackendFactory('webgpu')) {
    if (await tf.setBackend('webgpu')) return { ok: true, info: { ...running.info } };
    tf.removeBackend('webgpu');
    running = undefined;
    return { ok: false, reason: 'the webgpu engine that started earlier failed to initialize again' };
  }
  const probe = await probeAdapter(options.deps ?? defaultProbeDeps);
  if (!probe.ok) return probe;
  const { dawn, gpu, adapter, info } = probe;
  if (info.isFallbackAdapter && !options.allowFallbackAdapter) {
    return {
      ok: false,
      reason: `only a software adapter, ${adapterName(info)}: too slow to train on (set ${ALLOW_FALLBACK_ENV}=1 to use it anyway)`,
    };
  }
  const previousBackend = tf.getBackend();
  const undoGlobals = installGlobals(gpu, dawn.globals);
  try {
    const specifier: string = TFJS_WEBGPU_PACKAGE;
    const mod = (await import(specifier)) as { WebGPUBackend?: WebGPUBackendClass };
    if (!mod.WebGPUBackend) throw new Error(`${TFJS_WEBGPU_PACKAGE} exports no WebGPUBackend`);
    registerFactory(adapter, mod.WebGPUBackend);
    if (!(await tf.setBackend('webgpu'))) throw new Error('the engine failed to initialize on this adapter');
  } catch (err) {
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    undoGlobals();
    if (previousBackend && tf.getBackend() !== previousBackend) await tf.setBackend(previousBackend);
    return { ok: false, reason: `${TFJS_WEBGPU_PACKAGE} failed to start on ${adapterName(info)} (${firstLine(err)})` };
  }
  running = { gpu, info };
  return { ok: true, info: { ...info } };
}

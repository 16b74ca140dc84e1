// Finds the WebGPU adapter Dawn would use, without touching tfjs: nothing is registered and no global
// is set here, so a probe that fails leaves the process as it was.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** What the doctor and the logs show about an adapter; plain data, no Dawn objects. */
export interface WebgpuAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (SwiftShader, llvmpipe/lavapipe): correct but far too slow to train on. */
  isFallbackAdapter: boolean;
  /** Largest buffer one shader binding may see, in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer the device may allocate, in bytes. */
  maxBufferSize: number;
}

/** The parts of Dawn's objects this package uses (the `webgpu` package's types are optional). */
export interface DawnAdapter {
  readonly info: Partial<Record<'vendor' | 'architecture' | 'device' | 'description', string>> & {
    isFallbackAdapter?: boolean;
  };
  readonly isFallbackAdapter?: boolean;
  readonly limits: Record<string, number>;
  readonly features: { has(name: string): boolean };
  requestDevice(descriptor: { requiredFeatures?: string[]; requiredLimits?: Record<string, number> }): Promise<unknown>;
}
export interface DawnGpu {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<DawnAdapter | null>;
}
export interface DawnModule {
  create(options: string[]): DawnGpu;
  globals: object;
}

export const WEBGPU_PACKAGE = 'webgpu';
export const TFJS_WEBGPU_PACKAGE = '@tensorflow/tfjs-backend-webgpu';

/** How the probe reaches the optional packages; tests replace it to simulate their absence. */
export interface ProbeDeps {
  importDawn(): Promise<DawnModule>;
  /** Whether `@tensorflow/tfjs-backend-webgpu` resolves (checked without importing it). */
  hasTfjsWebgpu(): boolean;
}

export const defaultProbeDeps: ProbeDeps = {
  // A specifier in a variable: bundlers and the type checker must not follow the optional package.
  importDawn: async () => {
    const specifier: string = WEBGPU_PACKAGE;
    return (await import(specifier)) as DawnModule;
  },
  hasTfjsWebgpu: () => {
    try {
      createRequire(import.meta.url).resolve(`${TFJS_WEBGPU_PACKAGE}/package.json`);
      return true;
    } catch {
      return false;
    }
  },
};

/** The adapter found, or the one-line reason there is none. */
export type AdapterProbe =
  | { ok: true; dawn: DawnModule; gpu: DawnGpu; adapter: DawnAdapter; info: WebgpuAdapterInfo }
  | { ok: false; reason: string };

const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|software rasterizer/i;

export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return (text.split('\n').find((l) => l.trim() !== '') ?? text).trim().slice(0, 300);
}

export function isModuleNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/** Adapter info as plain data; a software rasterizer counts as fallback even if Dawn does not say so. */
export function describeAdapter(adapter: DawnAdapter): WebgpuAdapterInfo {
  const info = adapter.info;
  const text = (k: 'vendor' | 'architecture' | 'device' | 'description') => String(info[k] ?? '');
  const described = {
    vendor: text('vendor'),
    architecture: text('architecture'),
    device: text('device'),
    description: text('description'),
  };
  const software = Object.values(described).some((v) => SOFTWARE_NAMES.test(v));
  return {
    ...described,
    isFallbackAdapter: info.isFallbackAdapter === true || adapter.isFallbackAdapter === true || software,
    maxStorageBufferBindingSize: Number(adapter.limits.maxStorageBufferBindingSize ?? 0),
    maxBufferSize: Number(adapter.limits.maxBufferSize ?? 0),
  };
}

/** `vendor architecture (description)`, skipping what the driver left empty. */
export function adapterName(info: WebgpuAdapterInfo): string {
  const head = [info.vendor, info.architecture].filter((s) => s !== '').join(' ');
  const desc = info.description || info.device;
  if (!head) return desc || 'unnamed adapter';
  return desc ? `${head} (${desc})` : head;
}

/** Whether the Vulkan loader can be found the way the dynamic linker looks for it (Linux only). */
function vulkanLoaderFound(env: NodeJS.ProcessEnv): boolean {
  const dirs = (env.LD_LIBRARY_PATH ?? '').split(':').filter((d) => d !== '');
  if (dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')))) return true;
  try {
    return readFileSync('/etc/ld.so.cache').includes('libvulkan.so.1');
  } catch {
    return false;
  }
}

function noAdapterReason(env: NodeJS.ProcessEnv): string {
  if (process.platform === 'linux' && !vulkanLoaderFound(env)) {
    return 'no Vulkan loader (libvulkan.so.1 is not on the library path): install the GPU driver with its Vulkan support';
  }
  const icd = env.VK_ICD_FILENAMES ?? env.VK_DRIVER_FILES;
  return icd
    ? `no GPU adapter: the Vulkan driver in VK_ICD_FILENAMES (${icd}) offers none`
    : 'no GPU adapter: no Vulkan driver found (install the GPU driver with its Vulkan support, or point VK_ICD_FILENAMES at its ICD manifest)';
}

/**
 * Loads Dawn (the `webgpu` package) and asks for a high-performance adapter. Both optional packages
 * must resolve, so that a probe never passes and then fails on the tfjs side.
 */
export async function probeAdapter(
  deps: ProbeDeps = defaultProbeDeps,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AdapterProbe> {
  let dawn: DawnModule;
  try {
    dawn = await deps.importDawn();
  } catch (err) {
    return isModuleNotFound(err) && firstLine(err).includes(`'${WEBGPU_PACKAGE}'`)
      ? { ok: false, reason: `the optional package \`${WEBGPU_PACKAGE}\` is not installed` }
      : { ok: false, reason: `cannot load Dawn, the \`${WEBGPU_PACKAGE}\` package's native binding (${firstLine(err)})` };
  }
  if (!deps.hasTfjsWebgpu()) {
    return { ok: false, reason: `the optional package \`${TFJS_WEBGPU_PACKAGE}\` is not installed` };
  }
  try {
    const gpu = dawn.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { ok: false, reason: noAdapterReason(env) };
    return { ok: true, dawn, gpu, adapter, info: describeAdapter(adapter) };
  } catch (err) {
    return { ok: false, reason: `Dawn failed to look for an adapter (${firstLine(err)})` };
  }
}

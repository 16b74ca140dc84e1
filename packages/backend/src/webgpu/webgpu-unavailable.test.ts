// Runs everywhere, GPU or not: the driver is hidden from Vulkan and the package from the probe.
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BackendUnavailableError, initBackend } from '../init-backend.js';
import { defaultProbeDeps } from './adapter-probe.js';
import { webgpuAdapterInfo } from './webgpu-engine.js';

async function rejection(p: Promise<unknown>): Promise<BackendUnavailableError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackendUnavailableError);
  return err as BackendUnavailableError;
}

function expectNothingLeftBehind(): void {
  expect(tf.getBackend()).toBe('wasm');
  expect(tf.findBackendFactory('webgpu')).toBeNull();
  expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
  expect(webgpuAdapterInfo()).toBeUndefined();
}

describe("an explicit 'webgpu' that cannot start", () => {
  const icd = process.env.VK_ICD_FILENAMES;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    if (icd === undefined) delete process.env.VK_ICD_FILENAMES;
    else process.env.VK_ICD_FILENAMES = icd;
  });

  it.runIf(process.platform === 'linux')('no Vulkan driver: one line, the engine in use unchanged, nothing registered', async () => {
    // The Vulkan loader reads this when Dawn creates its instance, i.e. at each probe.
    process.env.VK_ICD_FILENAMES = '/nonexistent/vulkan-icd.json';
    const e = await rejection(initBackend({ backend: 'webgpu', log: false }));
    expect(e.message).not.toContain('\n');
    expect(e.message).toMatch(/^backend 'webgpu' is not available: webgpu: no (Vulkan loader|GPU adapter)/);
    expect(e.skipped.map((s) => s.backend)).toEqual(['webgpu']);
    expectNothingLeftBehind();
  });

  it('the webgpu package missing: one line naming it', async () => {
    const missing = Object.assign(new Error("Cannot find package 'webgpu' imported from /x/dist/index.js"), { code: 'ERR_MODULE_NOT_FOUND' });
    vi.spyOn(defaultProbeDeps, 'importDawn').mockRejectedValue(missing);
    const e = await rejection(initBackend({ backend: 'webgpu', log: false }));
    expect(e.message).toBe("backend 'webgpu' is not available: webgpu: the optional package `webgpu` is not installed");
    expectNothingLeftBehind();
  });

  it('tfjs-backend-webgpu missing: one line naming it', async () => {
    vi.spyOn(defaultProbeDeps, 'hasTfjsWebgpu').mockReturnValue(false);
    const e = await rejection(initBackend({ backend: 'webgpu', log: false }));
    expect(e.message).toBe(
      "backend 'webgpu' is not available: webgpu: the optional package `@tensorflow/tfjs-backend-webgpu` is not installed",
    );
    expectNothingLeftBehind();
  });
});

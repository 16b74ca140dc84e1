import { describe, expect, it } from 'vitest';
import { adapterName, describeAdapter, probeAdapter, type DawnAdapter, type DawnModule, type ProbeDeps } from './adapter-probe.js';
import { mayHaveHardwareGpu, PROBE_ENV } from './gpu-device-hint.js';
import { webgpuSkipReason } from './webgpu-test-gate.js';

function fakeAdapter(info: DawnAdapter['info'], extra: Partial<DawnAdapter> = {}): DawnAdapter {
  return {
    info,
    limits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 34 },
    features: { has: () => false },
    requestDevice: () => Promise.reject(new Error('not in this test')),
    ...extra,
  };
}

function deps(adapter: DawnAdapter | null, hasTfjsWebgpu = true): ProbeDeps {
  const dawn: DawnModule = { create: () => ({ requestAdapter: () => Promise.resolve(adapter) }), globals: {} };
  return { importDawn: () => Promise.resolve(dawn), hasTfjsWebgpu: () => hasTfjsWebgpu };
}

function notFound(specifier: string): Error {
  return Object.assign(new Error(`Cannot find package '${specifier}' imported from /x/dist/index.js`), { code: 'ERR_MODULE_NOT_FOUND' });
}

describe('describeAdapter', () => {
  it('a hardware adapter: vendor, architecture, description and the buffer limits, not fallback', () => {
    const info = describeAdapter(fakeAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' }));
    expect(info).toEqual({
      vendor: 'nvidia',
      architecture: 'hopper',
      device: '',
      description: 'NVIDIA H100 80GB HBM3',
      isFallbackAdapter: false,
      maxStorageBufferBindingSize: 2 ** 31,
      maxBufferSize: 2 ** 34,
    });
    expect(adapterName(info)).toBe('nvidia hopper (NVIDIA H100 80GB HBM3)');
  });

  it('software rasterizers count as fallback whether or not the adapter says so', () => {
    const said = fakeAdapter({ vendor: 'google', architecture: 'swiftshader', isFallbackAdapter: true });
    expect(describeAdapter(said).isFallbackAdapter).toBe(true);
    const older = fakeAdapter({ vendor: 'x', architecture: 'y' }, { isFallbackAdapter: true });
    expect(describeAdapter(older).isFallbackAdapter).toBe(true);
    for (const description of ['llvmpipe (LLVM 15.0.7, 256 bits)', 'SwiftShader driver 5.0.0', 'Mesa lavapipe']) {
      expect(describeAdapter(fakeAdapter({ vendor: 'mesa', description })).isFallbackAdapter, description).toBe(true);
    }
  });
});

describe('probeAdapter: each way to have no adapter is one line', () => {
  it('the webgpu package missing', async () => {
    const probe = await probeAdapter({ importDawn: () => Promise.reject(notFound('webgpu')), hasTfjsWebgpu: () => true });
    expect(probe).toEqual({ ok: false, reason: 'the optional package `webgpu` is not installed' });
  });

  it('tfjs-backend-webgpu missing', async () => {
    const probe = await probeAdapter(deps(fakeAdapter({ vendor: 'nvidia' }), false));
    expect(probe).toEqual({ ok: false, reason: 'the optional package `@tensorflow/tfjs-backend-webgpu` is not installed' });
  });

  it("Dawn's binding does not load (e.g. an older glibc)", async () => {
    const err = new Error("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found\n(required by dawn.node)");
    const probe = await probeAdapter({ importDawn: () => Promise.reject(err), hasTfjsWebgpu: () => true });
    expect(probe.ok).toBe(false);
    if (!probe.ok) {
      expect(probe.reason).toBe(
        "cannot load Dawn, the `webgpu` package's native binding (/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found)",
      );
    }
  });

  it('no adapter: names the Vulkan driver given, or says none was found', async () => {
    const withIcd = await probeAdapter(deps(null), { VK_ICD_FILENAMES: '/x/icd.json', LD_LIBRARY_PATH: '' });
    const without = await probeAdapter(deps(null), { LD_LIBRARY_PATH: '' });
    for (const probe of [withIcd, without]) {
      expect(probe.ok).toBe(false);
      if (!probe.ok) {
        expect(probe.reason).not.toContain('\n');
        expect(probe.reason).toMatch(/^no (Vulkan loader|GPU adapter)/);
      }
    }
  });

  it('an adapter: plain info and the Dawn objects to start the engine with', async () => {
    const probe = await probeAdapter(deps(fakeAdapter({ vendor: 'amd', architecture: 'rdna-3' })));
    expect(probe.ok).toBe(true);
    if (probe.ok) expect(probe.info).toMatchObject({ vendor: 'amd', architecture: 'rdna-3', isFallbackAdapter: false });
  });
});

describe('mayHaveHardwareGpu and the test gate', () => {
  it(`${PROBE_ENV}=1 / 0 force the answer; otherwise the device nodes decide`, () => {
    expect(mayHaveHardwareGpu({ [PROBE_ENV]: '1' })).toBe(true);
    expect(mayHaveHardwareGpu({ [PROBE_ENV]: '0' })).toBe(false);
    expect(typeof mayHaveHardwareGpu({})).toBe('boolean');
  });

  it('the webgpu tests skip without a driver, except in CI where that is an error', () => {
    const none = { [PROBE_ENV]: '0' };
    expect(webgpuSkipReason({ ...none })).toMatch(/^no Vulkan driver configured/);
    expect(() => webgpuSkipReason({ ...none, CI: 'true' })).toThrow(/^CI must run the webgpu tests/);
    expect(webgpuSkipReason({ ...none, CI: 'true', VK_ICD_FILENAMES: '/x/icd.json' })).toBeUndefined();
  });
});

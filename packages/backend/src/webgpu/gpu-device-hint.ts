// Whether `auto` should load Dawn at all. Loading it costs time and, without a Vulkan loader, prints
// Dawn's own warnings on stderr; a machine without a GPU device node cannot have a hardware adapter.
import { existsSync, readdirSync } from 'node:fs';

/** `PEER_WEBGPU_PROBE=1` makes `auto` probe WebGPU everywhere, `0` never; otherwise the device nodes decide. */
export const PROBE_ENV = 'PEER_WEBGPU_PROBE';

function hasEntry(dir: string, test: (name: string) => boolean): boolean {
  try {
    return readdirSync(dir).some(test);
  } catch {
    return false;
  }
}

/**
 * True when this machine may have a hardware GPU that Dawn can use: a DRM render node (AMD, Intel,
 * NVIDIA open driver), an NVIDIA device node, WSL's GPU bridge, or macOS/Windows (Metal, D3D12).
 */
export function mayHaveHardwareGpu(env: NodeJS.ProcessEnv = process.env): boolean {
  const forced = env[PROBE_ENV];
  if (forced === '1') return true;
  if (forced === '0') return false;
  if (process.platform === 'darwin' || process.platform === 'win32') return true;
  if (process.platform !== 'linux') return false;
  return (
    hasEntry('/dev/dri', (n) => n.startsWith('renderD')) ||
    hasEntry('/dev', (n) => /^nvidia\d+$/.test(n)) ||
    existsSync('/dev/dxg')
  );
}

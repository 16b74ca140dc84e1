// Whether this process can reach a Vulkan driver for webgpu test suites (every package's). A developer
// without one gets a skip with the reason; CI (CI=true) must never skip them, so there it is an error.
import { mayHaveHardwareGpu } from './gpu-device-hint.js';

export const SWIFTSHADER_HINT = 'eval "$(bash tooling/scripts/fetch-swiftshader.sh)" sets up SwiftShader';

/** Undefined when a Vulkan driver is configured, else why the webgpu tests are skipped. */
export function webgpuSkipReason(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES || mayHaveHardwareGpu(env)) return undefined;
  const reason = `no Vulkan driver configured (VK_ICD_FILENAMES unset, no GPU device); ${SWIFTSHADER_HINT}`;
  if (env.CI === 'true') throw new Error(`CI must run the webgpu tests, but: ${reason}`);
  return reason;
}

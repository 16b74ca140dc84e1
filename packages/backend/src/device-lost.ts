// A GPU device can be lost while a run uses it (driver reset, GPU fault, the device destroyed). The
// webgpu engine does not say so itself: its next read just fails. Callers that must tell a lost device
// from a bug (the trainer treats it like a crash and keeps the last checkpoint) watch the device here.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from './device.js';

/** The parts of a WebGPU device this file uses. */
interface LosableDevice {
  lost: Promise<{ reason?: string; message?: string }>;
  destroy(): void;
}

function activeDevice(): LosableDevice | undefined {
  if (!onDevice()) return undefined;
  const device = (tf.backend() as unknown as { device?: LosableDevice }).device;
  return device && typeof device.destroy === 'function' && device.lost instanceof Promise ? device : undefined;
}

export interface DeviceLossWatch {
  /** Undefined while the device is fine; once lost, one line saying why (the driver's message). */
  lost(): string | undefined;
  /** Resolves with that line when the device is lost (never on engines without a device). */
  readonly whenLost: Promise<string>;
}

/**
 * Watches the active engine's GPU device. On wasm and cpu `lost()` stays undefined. Read `lost()`
 * after a failure on the device: a failed read of a lost device and the loss's notice can arrive in
 * either order, so `settleLoss` gives the notice a moment.
 */
export function watchDeviceLoss(): DeviceLossWatch {
  const device = activeDevice();
  let reason: string | undefined;
  const whenLost = device
    ? device.lost.then((info) => {
        const why = [info.reason, info.message].filter((s) => typeof s === 'string' && s.trim() !== '').join(': ');
        reason = (why || 'no reason given').split('\n')[0]!.trim();
        return reason;
      })
    : new Promise<string>(() => {});
  return { lost: () => reason, whenLost };
}

/** Waits up to `ms` for the watched device's loss notice; returns the reason, or undefined if none came. */
export async function settleLoss(watch: DeviceLossWatch, ms = 200): Promise<string | undefined> {
  if (watch.lost() !== undefined) return watch.lost();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([watch.whenLost, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Loses the active engine's GPU device on purpose (it is destroyed: every later operation and read on
 * it fails), to test what callers do when that happens. Throws on engines without a device.
 */
export function loseDeviceForTesting(): void {
  const device = activeDevice();
  if (!device) throw new Error(`loseDeviceForTesting: the active engine (${tf.getBackend()}) has no GPU device`);
  device.destroy();
}

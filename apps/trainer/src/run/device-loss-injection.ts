// Fault injection for the tests of device loss: `PEER_TEST_LOSE_DEVICE_AFTER_STEP=N` destroys the GPU
// device once step N has finished (webgpu only), as a driver reset would, so that a test can check
// that the run stops like a crash and its last checkpoint resumes on any engine.
import { loseDeviceForTesting, onDevice } from '@peer/backend';
import { UsageError } from '../errors.js';

export const LOSE_DEVICE_ENV = 'PEER_TEST_LOSE_DEVICE_AFTER_STEP';

/**
 * A function to call after every step (with the steps done so far) that loses the device at the
 * configured step; a no-op without the variable. Throws a UsageError on a bad value or another engine.
 */
export function deviceLossInjection(env: NodeJS.ProcessEnv = process.env): (stepsDone: number) => void {
  const raw = env[LOSE_DEVICE_ENV];
  if (raw === undefined || raw === '') return () => {};
  const after = Number(raw);
  if (!Number.isInteger(after) || after < 1) throw new UsageError(`${LOSE_DEVICE_ENV} must be an integer >= 1, got '${raw}'`);
  if (!onDevice()) throw new UsageError(`${LOSE_DEVICE_ENV} simulates losing a GPU device: it needs --backend webgpu`);
  let lost = false;
  return (stepsDone) => {
    if (lost || stepsDone < after) return;
    lost = true;
    loseDeviceForTesting();
  };
}

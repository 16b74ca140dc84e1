import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { deviceLossInjection, LOSE_DEVICE_ENV } from './device-loss-injection.js';

describe('deviceLossInjection', () => {
  it('does nothing without the variable', () => {
    const inject = deviceLossInjection({});
    expect(() => inject(100)).not.toThrow();
  });

  it('refuses a bad step and an engine without a GPU device, naming the variable', () => {
    for (const raw of ['0', '-1', '2.5', 'x']) {
      expect(() => deviceLossInjection({ [LOSE_DEVICE_ENV]: raw })).toThrow(new UsageError(`${LOSE_DEVICE_ENV} must be an integer >= 1, got '${raw}'`));
    }
    // the test setup runs on a CPU engine
    expect(() => deviceLossInjection({ [LOSE_DEVICE_ENV]: '3' })).toThrow(/needs --backend webgpu/);
  });
});

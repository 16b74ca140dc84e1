import { describe, expect, it } from 'vitest';
import { adapterLines } from './doctor.js';

describe('doctor: adapter lines', () => {
  it('vendor, architecture, description, fallback and both buffer limits, one per line', () => {
    const lines = adapterLines({
      vendor: 'google',
      architecture: 'swiftshader',
      device: 'swiftshader-device-subzero-',
      description: 'SwiftShader driver 5.0.0',
      isFallbackAdapter: true,
      maxStorageBufferBindingSize: 2 ** 30,
      maxBufferSize: 2 ** 31,
    });
    expect(lines).toEqual([
      '  adapter: vendor google, architecture swiftshader, description SwiftShader driver 5.0.0',
      '  fallback (software) adapter: yes',
      '  maxStorageBufferBindingSize: 1073741824 bytes (1.00 GiB)',
      '  maxBufferSize: 2147483648 bytes (2.00 GiB)',
    ]);
  });
});

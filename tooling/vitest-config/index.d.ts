import type { UserConfig } from 'vitest/config';

export interface PackageTestOptions {
  /** Per-test timeout of the unit project in ms (default 60 s). */
  testTimeout?: number;
  /** Per-test timeout of the slow project in ms (default 600 s). */
  slowTestTimeout?: number;
  /** Files run before each test file (e.g. to select the tfjs backend). */
  setupFiles?: string[];
}

export function definePackageTest(options?: PackageTestOptions): UserConfig;

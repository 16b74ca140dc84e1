// Tests sit next to the code: `*.test.ts` runs in the `unit` project, `*.slow.test.ts` in `slow`.
// `vitest run --project unit` is the quick loop; plain `vitest run` runs both.
import { defineConfig } from 'vitest/config';

/** @param {import('./index.d.ts').PackageTestOptions} [options] */
export function definePackageTest(options = {}) {
  const shared = {
    environment: 'node',
    // tfjs keeps one global engine per process; forks isolate files from each other.
    pool: 'forks',
    testTimeout: options.testTimeout ?? 60_000,
    hookTimeout: 60_000,
    setupFiles: options.setupFiles ?? [],
  };
  return defineConfig({
    test: {
      passWithNoTests: false,
      // The JSON report feeds the repository-wide summary line (tooling/scripts/test-summary.mjs).
      reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
      projects: [
        {
          test: {
            ...shared,
            name: 'unit',
            include: ['src/**/*.test.ts'],
            exclude: ['src/**/*.slow.test.ts', '**/node_modules/**'],
          },
        },
        {
          test: {
            ...shared,
            name: 'slow',
            include: ['src/**/*.slow.test.ts'],
            testTimeout: options.slowTestTimeout ?? 600_000,
          },
        },
      ],
    },
  });
}

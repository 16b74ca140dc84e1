import { definePackageTest } from '@peer/vitest-config';

export default definePackageTest({ setupFiles: ['./src/test-setup.ts'] });

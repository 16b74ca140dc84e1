import { definePackageTest } from '@peer/vitest-config';

export default definePackageTest();

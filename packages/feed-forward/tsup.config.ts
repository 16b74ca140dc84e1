import { definePackageConfig } from '@peer/tsup-config';

export default definePackageConfig();

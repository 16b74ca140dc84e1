import { definePackageConfig } from '@peer/tsup-config';

export default definePackageConfig({ entry: ['src/cli.ts'], banner: { js: '#!/usr/bin/env node' } });

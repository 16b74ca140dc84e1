import { definePackageConfig } from '@peer/tsup-config';

export default definePackageConfig({ entry: { index: 'src/index.ts', 'tf-layers': 'src/tf-layers.ts' } });

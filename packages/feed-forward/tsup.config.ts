import { definePackageConfig } from '@peer/tsup-config';

// ./tf-layers shares its modules with the main entry through chunks (one class per export, not two copies).
export default definePackageConfig({ entry: { index: 'src/index.ts', 'tf-layers': 'src/tf-layers.ts' }, splitting: true });

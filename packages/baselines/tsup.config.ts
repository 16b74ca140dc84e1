import { definePackageConfig } from '@peer/tsup-config';

// ./tf-layers shares the layer classes with the main entry (one class per layer kind, not two copies).
export default definePackageConfig({ entry: { index: 'src/index.ts', 'tf-layers': 'src/tf-layers.ts' }, splitting: true });

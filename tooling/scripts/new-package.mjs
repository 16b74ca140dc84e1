#!/usr/bin/env node
// Scaffolds packages/<name> with the shared presets: `node tooling/scripts/new-package.mjs <name> "<description>"`.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const [name, description = ''] = process.argv.slice(2);
if (!name || !/^[a-z][a-z0-9-]*$/.test(name)) {
  console.error('usage: new-package.mjs <kebab-name> "<description>"');
  process.exit(2);
}
const dir = join('packages', name);
if (existsSync(dir)) {
  console.error(`${dir} exists already`);
  process.exit(2);
}
mkdirSync(join(dir, 'src'), { recursive: true });
const pkg = {
  name: `@peer/${name}`,
  version: '0.1.0',
  description,
  license: 'Apache-2.0',
  type: 'module',
  main: './dist/index.cjs',
  module: './dist/index.js',
  types: './dist/index.d.cts',
  exports: {
    '.': {
      import: { types: './dist/index.d.ts', default: './dist/index.js' },
      require: { types: './dist/index.d.cts', default: './dist/index.cjs' },
    },
    './package.json': './package.json',
  },
  files: ['dist', 'README.md', 'CHANGELOG.md'],
  engines: { node: '>=20' },
  scripts: {
    build: 'tsup',
    typecheck: 'tsc --noEmit',
    lint: 'eslint .',
    test: 'vitest run',
    'test:fast': 'vitest run --project unit',
    'check:package': 'publint --strict && attw --pack . --profile node16',
  },
  peerDependencies: { '@tensorflow/tfjs-core': '^4.22.0' },
  devDependencies: {
    '@peer/eslint-config': 'workspace:*',
    '@peer/tsconfig': 'workspace:*',
    '@peer/tsup-config': 'workspace:*',
    '@peer/vitest-config': 'workspace:*',
  },
};
writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
writeFileSync(
  join(dir, 'tsconfig.json'),
  JSON.stringify({ extends: '@peer/tsconfig/base.json', include: ['src', 'bench'] }, null, 2) + '\n',
);
writeFileSync(join(dir, 'tsup.config.ts'), "import { definePackageConfig } from '@peer/tsup-config';\n\nexport default definePackageConfig();\n");
writeFileSync(join(dir, 'vitest.config.ts'), "import { definePackageTest } from '@peer/vitest-config';\n\nexport default definePackageTest();\n");
writeFileSync(join(dir, 'eslint.config.js'), "export { default } from '@peer/eslint-config';\n");
writeFileSync(join(dir, 'src', 'index.ts'), '');
writeFileSync(join(dir, 'README.md'), `# @peer/${name}\n\n${description}\n`);
console.log(`created ${dir}`);

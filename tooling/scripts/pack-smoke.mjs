#!/usr/bin/env node
// Release check: packs every public @peer library with `pnpm pack` (workspace: links become
// versions), installs the tarballs into an empty folder with npm, and imports each one from ESM
// and from CJS. Run after `pnpm build`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const work = join(root, '.pack-smoke');
const tarballs = join(work, 'tarballs');
const app = join(work, 'app');
rmSync(work, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });
mkdirSync(app, { recursive: true });

const libs = readdirSync(join(root, 'packages'))
  .map((dir) => ({ dir: join(root, 'packages', dir), pkg: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) }))
  .filter(({ pkg }) => !pkg.private);

const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

const deps = { '@tensorflow/tfjs': '4.22.0', '@tensorflow/tfjs-core': '4.22.0', '@tensorflow/tfjs-layers': '4.22.0' };
for (const { dir, pkg } of libs) {
  const out = run('pnpm', ['pack', '--pack-destination', tarballs], dir).trim().split('\n').pop();
  deps[pkg.name] = `file:${out}`;
}
// Every @peer dependency resolves to its tarball, never to the registry.
const overrides = Object.fromEntries(Object.entries(deps).filter(([n]) => n.startsWith('@peer/')));
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-smoke', private: true, dependencies: deps, overrides }, null, 2));
run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], app);

// Every entry point: the main one and each subpath of the exports map (e.g. @peer/layer/tf-layers).
const names = libs.flatMap(({ pkg }) => [
  pkg.name,
  ...Object.keys(pkg.exports ?? {})
    .filter((key) => key.startsWith('./') && !key.endsWith('.json'))
    .map((key) => `${pkg.name}${key.slice(1)}`),
]);
writeFileSync(
  join(app, 'esm.mjs'),
  `for (const n of ${JSON.stringify(names)}) { const m = await import(n); if (!Object.keys(m).length) throw new Error(n + ': no exports (ESM)'); console.log('esm ok', n, Object.keys(m).length); }\n`,
);
writeFileSync(
  join(app, 'cjs.cjs'),
  `for (const n of ${JSON.stringify(names)}) { const m = require(n); if (!Object.keys(m).length) throw new Error(n + ': no exports (CJS)'); console.log('cjs ok', n, Object.keys(m).length); }\n`,
);
process.stdout.write(run('node', ['esm.mjs'], app));
process.stdout.write(run('node', ['cjs.cjs'], app));
console.log(`pack-smoke: ${libs.length} packages install and their ${names.length} entry points import from ESM and CJS`);

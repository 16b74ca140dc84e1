#!/usr/bin/env node
// Release check: `pnpm publish --dry-run` in every public package (what `changeset publish` runs,
// without uploading), then a look at each would-be tarball: README.md and CHANGELOG.md are in it,
// and so is every file that package.json's main/module/types and exports map point at. Run after
// `pnpm build`; CI runs it after the package checks.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const libs = readdirSync(join(root, 'packages'))
  .map((dir) => ({ dir: join(root, 'packages', dir), pkg: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) }))
  .filter(({ pkg }) => !pkg.private);

/** Every file path a manifest's entry points name (conditions of the exports map at any depth). */
function entryFiles(pkg) {
  const out = new Set();
  const walk = (value) => {
    if (typeof value === 'string') {
      if (value.startsWith('./') && !value.includes('*')) out.add(value.slice(2));
    } else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  for (const key of ['main', 'module', 'types']) if (typeof pkg[key] === 'string') out.add(pkg[key].replace(/^\.\//, ''));
  walk(pkg.exports);
  return [...out];
}

const problems = [];
for (const { dir, pkg } of libs) {
  let report;
  try {
    const stdout = execFileSync('pnpm', ['publish', '--dry-run', '--no-git-checks', '--json'], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const parsed = JSON.parse(stdout);
    report = parsed[pkg.name] ?? parsed;
  } catch (err) {
    problems.push(`${pkg.name}: pnpm publish --dry-run failed: ${(err.stderr || err.message || String(err)).trim().split('\n').slice(-3).join(' | ')}`);
    continue;
  }
  const files = new Set(report.files.map((f) => f.path));
  const missing = ['README.md', 'CHANGELOG.md', ...entryFiles(pkg)].filter((f) => !files.has(f));
  if (report.version !== pkg.version) problems.push(`${pkg.name}: the tarball says version ${report.version}, package.json ${pkg.version}`);
  if (missing.length > 0) problems.push(`${pkg.name}@${pkg.version}: not in the tarball: ${missing.join(', ')}`);
  console.log(`publish dry run: ${report.id} ${files.size} files, ${(report.size / 1024).toFixed(1)} kB packed${missing.length ? ' (incomplete)' : ''}`);
}
if (problems.length > 0) {
  for (const p of problems) console.error(`publish-dry-run: ${p}`);
  process.exit(1);
}
console.log(`publish-dry-run: ${libs.length} packages would publish`);

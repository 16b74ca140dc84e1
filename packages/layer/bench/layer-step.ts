// pnpm bench [-- --experts 16384 --tokens 512 --steps 5 --backend wasm]
// One PEER layer's full training step (see src/bench-layer-step.ts). Without --experts it runs the
// issue's two configs (N = 128^2 and 1024^2, d 256, h 8, k 16, dk 128, 512 tokens). Each config
// runs in a fresh plain Node process on the built package (layer-step-child.mjs), so that each
// peak RSS is its own and holds no TypeScript loader. Prints one JSON object per config.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LayerStepBenchOptions } from '../src/bench-layer-step.js';

// pnpm passes a literal '--' through.
const argv = process.argv.slice(2).filter((a) => a !== '--');
const { values } = parseArgs({
  args: argv,
  options: {
    experts: { type: 'string' },
    dim: { type: 'string', default: '256' },
    heads: { type: 'string', default: '8' },
    topk: { type: 'string', default: '16' },
    'dim-key': { type: 'string', default: '128' },
    tokens: { type: 'string', default: '512' },
    steps: { type: 'string', default: '5' },
    backend: { type: 'string', default: 'wasm' },
  },
});

const child = fileURLToPath(new URL('./layer-step-child.mjs', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))) {
  process.stderr.write('bench: build the package first (pnpm build; `pnpm turbo run bench` does it)\n');
  process.exit(1);
}
const experts = values.experts === undefined ? [128 * 128, 1024 * 1024] : [Number(values.experts)];
for (const numExperts of experts) {
  const bench: LayerStepBenchOptions = {
    layer: { numExperts, dim: Number(values.dim), heads: Number(values.heads), topK: Number(values.topk), dimKey: Number(values['dim-key']) },
    tokens: Number(values.tokens),
    steps: Number(values.steps),
  };
  const run = spawnSync(process.execPath, [child, JSON.stringify({ backend: values.backend, bench })], { stdio: 'inherit' });
  if (run.status !== 0) process.exit(run.status ?? 1);
}

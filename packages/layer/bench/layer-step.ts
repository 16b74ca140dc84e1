// pnpm bench [-- --experts 16384 --tokens 512 --steps 5 --backend wasm]
// One PEER layer's full training step (see src/bench-layer-step.ts). Without --experts it runs the
// issue's two configs (N = 128^2 and 1024^2, d 256, h 8, k 16, dk 128, 512 tokens), each in a
// fresh process so that each peak RSS is its own. Prints one JSON object per config.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend, type BackendRequest } from '@peer/backend';
import { benchLayerStep } from '../src/bench-layer-step.js';

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

if (values.experts === undefined) {
  for (const n of [128 * 128, 1024 * 1024]) {
    const args = [...process.execArgv, fileURLToPath(import.meta.url), ...argv, '--experts', String(n)];
    const run = spawnSync(process.execPath, args, { stdio: 'inherit' });
    if (run.status !== 0) process.exit(run.status ?? 1);
  }
} else {
  await initBackend({ backend: values.backend as BackendRequest, log: false });
  const result = await benchLayerStep({
    layer: {
      numExperts: Number(values.experts),
      dim: Number(values.dim),
      heads: Number(values.heads),
      topK: Number(values.topk),
      dimKey: Number(values['dim-key']),
    },
    tokens: Number(values.tokens),
    steps: Number(values.steps),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

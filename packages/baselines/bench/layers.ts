// pnpm bench [-- --layer dense|moe|moe-ec|pkm|all] [--dim 256] [--tokens 512] [--steps 5] [--warmup 1]
//            [--backend auto|wasm|cpu|tensorflow] [--set key=value ...] [--json]
//
// Times a full training step of each baseline layer at matched active parameters and prints a
// table (or one JSON object per layer with --json). With --layer all, every layer runs in its own
// process, so that each peak RSS is its own.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend, type BackendRequest } from '@peer/backend';
import { BASELINE_KINDS, benchBaselineLayer, type BaselineBenchResult, type BaselineKind } from '../src/bench-layer-step.js';

const { values } = parseArgs({
  options: {
    layer: { type: 'string', default: 'all' },
    dim: { type: 'string', default: '256' },
    tokens: { type: 'string', default: '512' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'auto' },
    set: { type: 'string', multiple: true, default: [] },
    json: { type: 'boolean', default: false },
  },
});

function int(name: string, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`--${name} must be a positive integer, got '${text}'`);
    process.exit(2);
  }
  return v;
}

function overrides(sets: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) {
      console.error(`--set expects key=value, got '${s}'`);
      process.exit(2);
    }
    const raw = s.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a plain string
    }
    out[s.slice(0, eq)] = value;
  }
  return out;
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

function row(r: BaselineBenchResult): string {
  const p = r.phases_ms_median;
  return `| ${r.layer} | ${r.active_params_per_token.toLocaleString('en-US')} | ${r.total_params.toLocaleString('en-US')} | ${(r.flops_per_token / 1e6).toFixed(2)} M | ${r.ms_per_step_median} | ${r.cpu_ms_per_step_median} | ${p.forward_backward} / ${p.dense_update} / ${p.sparse_update} | ${r.tokens_per_second.toLocaleString('en-US')} | ${mb(r.peak_rss_bytes)} |`;
}

const kinds: BaselineKind[] = values.layer === 'all' ? [...BASELINE_KINDS] : [values.layer as BaselineKind];
if (!kinds.every((k) => (BASELINE_KINDS as readonly string[]).includes(k))) {
  console.error(`--layer must be one of ${BASELINE_KINDS.join(', ')} or all, got '${values.layer}'`);
  process.exit(2);
}
const common = { dim: int('dim', values.dim), tokens: int('tokens', values.tokens), steps: int('steps', values.steps), warmup: Number(values.warmup) };

let results: BaselineBenchResult[];
if (kinds.length > 1) {
  // One process per layer: separate peak RSS and no heap left over from the previous layer.
  const script = fileURLToPath(import.meta.url);
  const passOn = process.argv.slice(2).filter((a, i, all) => a !== '--layer' && all[i - 1] !== '--layer' && !a.startsWith('--layer=') && a !== '--json');
  results = kinds.map((kind) => {
    const child = spawnSync(process.execPath, [...process.execArgv, script, ...passOn, '--layer', kind, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.status !== 0) {
      console.error(`benchmark of ${kind} failed (exit ${child.status})`);
      process.exit(1);
    }
    return JSON.parse(child.stdout.trim().split('\n').pop()!) as BaselineBenchResult;
  });
} else {
  const choice = await initBackend({ backend: values.backend as BackendRequest, log: values.json ? false : undefined });
  void choice;
  results = [await benchBaselineLayer({ layer: kinds[0]!, ...common, overrides: overrides(values.set) })];
}

if (values.json) {
  for (const r of results) console.log(JSON.stringify(r));
} else {
  const r0 = results[0]!;
  console.log(`backend ${r0.backend}, D = ${r0.dim}, ${r0.tokens} tokens per step, median of ${r0.steps} steps`);
  console.log('| layer | active params / token | total params | FLOPs / token | ms / step | CPU ms / step | fwd+bwd / dense Adam / sparse (ms) | tokens / s | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) console.log(row(r));
}

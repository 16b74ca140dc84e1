// The PyTorch side of `bench train`: the dense preset's model (bench/pytorch_dense.py) trained in
// PyTorch on the same machine in the same run, when python3 with torch is there. Otherwise there is
// no ratio, and the reason says why.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { trainerRoot } from '../config/presets.js';

export type PytorchDense =
  | { available: true; version: string; tokensPerSecondByThreads: Record<string, number>; best: number; bestThreads: number }
  | { available: false; reason: string };

/** The script that trains the dense model in PyTorch (kept in this package). */
export function pytorchDenseScript(): string {
  return join(trainerRoot(), 'bench', 'pytorch_dense.py');
}

/** torch's version, or why `python` cannot run the PyTorch benchmark. */
export function probeTorch(python: string): { version: string } | { reason: string } {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) {
    const code = (r.error as { code?: string }).code;
    return { reason: code === 'ENOENT' ? `${python} is not installed` : `${python} cannot start (${r.error.message})` };
  }
  if (r.status !== 0) {
    const last = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? `exit ${r.status}`;
    return { reason: `${python} cannot import torch (${last})` };
  }
  return { version: r.stdout.trim() };
}

function runScript(python: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [pytorchDenseScript(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Tokens/s of the dense model in PyTorch at each thread count (the median step of `steps`), and the
 * best of them; `available: false` with the reason when python3 or torch is missing or the script fails.
 */
export async function measurePytorchDense(threads: readonly number[], steps: number, python = process.env.PEER_PYTHON ?? 'python3'): Promise<PytorchDense> {
  const probe = probeTorch(python);
  if ('reason' in probe) return { available: false, reason: probe.reason };
  const byThreads: Record<string, number> = {};
  for (const t of threads) {
    const r = await runScript(python, ['--threads', String(t), '--steps', String(steps)]);
    const last = r.stdout.split('\n').filter((l) => l.trim()).at(-1) ?? '';
    if (r.code !== 0) {
      const why = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? `exit ${r.code}`;
      return { available: false, reason: `the PyTorch script failed with ${t} threads (${why})` };
    }
    byThreads[String(t)] = (JSON.parse(last) as { tokens_per_second: number }).tokens_per_second;
  }
  const [bestThreads, best] = Object.entries(byThreads).reduce((a, b) => (b[1] > a[1] ? b : a));
  return { available: true, version: probe.version, tokensPerSecondByThreads: byThreads, best, bestThreads: Number(bestThreads) };
}

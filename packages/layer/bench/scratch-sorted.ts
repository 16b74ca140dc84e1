import { initBackend } from '@peer/backend';
import { ExpertTable, RowSparseGrad, SparseAdam } from '@peer/expert-store';
await initBackend({ backend: 'wasm', log: false });
const N = 1 << 20, D = 256, n = 65536;
const u = new ExpertTable({ rows: N, dim: D, seed: 1, name: 'u' });
const adam = new SparseAdam({ lr: 1e-3 }, [u]);
for (const e of adam.stateEntries()) { const d = e.data as Float32Array; for (let i = 0; i < d.length; i += 1024) d[i] = d[i]!; }
const grad = new RowSparseGrad(u);
const out = new Float32Array(n * D);
const g = new Float32Array(n * D).fill(1e-3);
function cpu(f: () => void) { const c0 = process.cpuUsage(); f(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; }
for (let rep = 0; rep < 6; rep++) {
  const idx = new Int32Array(n); const seen = new Set<number>();
  for (let i = 0; i < n; i++) { let r; do { r = Math.floor(Math.random() * N); } while (seen.has(r)); seen.add(r); idx[i] = r; }
  const sorted = idx.slice().sort();
  for (const [name, rows] of [['random', idx], ['sorted', sorted]] as const) {
    const tg = cpu(() => u.gatherInto(rows, out));
    const ta = cpu(() => grad.accumulate(rows, g));
    const ts = cpu(() => adam.step(u, grad, 1));
    console.log(name.padEnd(8), 'gather', tg.toFixed(1), 'accumulate', ta.toFixed(1), 'adam', ts.toFixed(1));
  }
}

// The sweep table: CSV columns and quoting, Markdown rows, and the compute-optimal marks.
import { describe, expect, it } from 'vitest';
import { bestRows, CSV_COLUMNS, toCsv, toMarkdown, type SweepRow } from './summary-table.js';

function row(method: string, size: string, loss: number | null, extra: Partial<SweepRow> = {}): SweepRow {
  return {
    budget: 1e12,
    budget_label: '1e12',
    method,
    size,
    n_experts: null,
    h: null,
    k: null,
    query_norm: null,
    seed: 1337,
    params_total: 123456,
    params_active: 100000,
    flops_per_token: 250000,
    steps: 1000,
    tokens: loss === null ? null : 2048000,
    val_loss: loss,
    val_ppl: loss === null ? null : Math.exp(loss),
    val_bpb: loss === null ? null : loss / Math.LN2,
    usage: null,
    unevenness: null,
    dead_fraction: null,
    wall_seconds: loss === null ? null : 60.5,
    tokens_per_s: loss === null ? null : 33851.2,
    status: loss === null ? 'failed' : 'done',
    run: `runs/1e12-${method}-${size}`,
    ...extra,
  };
}

describe('sweep table', () => {
  const rows = [row('dense', 's', 2.5), row('dense', 'm', 2.25), row('peer', 's', 2.125), row('peer', 'm', null), row('dense', 'l', 2.4, { budget: 2e12, budget_label: '2e12' })];

  it('CSV: the header, one line per run, full precision, empty cells for missing numbers', () => {
    const lines = toCsv(rows).trimEnd().split('\n');
    expect(lines[0]).toBe(CSV_COLUMNS.join(','));
    expect(CSV_COLUMNS.slice(0, 19)).toEqual(['budget', 'method', 'size', 'n_experts', 'h', 'k', 'query_norm', 'seed', 'params_total', 'params_active', 'flops_per_token', 'steps', 'tokens', 'val_loss', 'val_ppl', 'val_bpb', 'usage', 'unevenness', 'dead_fraction']);
    expect(lines).toHaveLength(rows.length + 1);
    const cells = lines[1]!.split(',');
    expect(cells.slice(0, 16)).toEqual(['1000000000000', 'dense', 's', '', '', '', '', '1337', '123456', '100000', '250000', '1000', '2048000', '2.5', String(Math.exp(2.5)), String(2.5 / Math.LN2)]);
    expect(lines[4]).toBe('1000000000000,peer,m,,,,,1337,123456,100000,250000,1000,,,,,,,,,,failed,runs/1e12-peer-m');
    expect(toCsv([row('a,"b"', 's', 1)]).split('\n')[1]).toMatch(/^1000000000000,"a,""b""",s,/);
  });

  it('compute-optimal rows: the lowest loss of each method at each budget', () => {
    const best = bestRows(rows);
    expect([...best].map((r) => `${r.budget_label} ${r.method} ${r.size}`).sort()).toEqual(['1e12 dense m', '1e12 peer s', '2e12 dense l']);
  });

  it('Markdown: one table row per run, rounded, best in bold, failures named', () => {
    const md = toMarkdown(rows, { name: 'q', source: 'preset q', description: 'a test' });
    const table = md.split('\n').filter((l) => l.startsWith('| '));
    expect(table).toHaveLength(rows.length + 1);
    expect(table[0]).toBe('| budget | method | size | N | h | k | query norm | seed | params total | params active | FLOPs/token | steps | tokens | val_loss | val_ppl | val_bpb | usage | KL | dead |');
    expect(table[1]).toBe(`| 1e12 | dense | s |  |  |  |  | 1337 | 123k | 100k | 250k | 1,000 | 2.05M | 2.5000 | ${Math.exp(2.5).toFixed(3)} | ${(2.5 / Math.LN2).toFixed(4)} |  |  |  |`);
    expect(table[2]).toContain('| **2.2500** |');
    expect(table[4]).toBe('| 1e12 | peer | m |  |  |  |  | 1337 | 123k | 100k | 250k | 1,000 |  | failed |  |  |  |  |  |');
    expect(md).toContain('4 of 5 runs finished');
    expect(md).toContain('![isoFLOP curves](isoflop.png)');
  });
});

// A plain float64 reference of the transformer, written loop by loop for tests: it reads the
// model's state entries by name and recomputes logits and loss from scratch.
// Axes: B batch, S sequence, D model width, A heads, Dh head width, V vocabulary, H FFW hidden width.
import type { ModelConfig } from './config.js';

/** erf by its Taylor series (converges fast for |x| < 4; beyond, 1 - |erf| < 2e-8). */
export function erf64(x: number): number {
  if (Math.abs(x) >= 4) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export const gelu64 = (x: number): number => 0.5 * x * (1 + erf64(x / Math.SQRT2));

export type Weights = Map<string, Float64Array>;

function get(w: Weights, name: string): Float64Array {
  const v = w.get(name);
  if (!v) throw new Error(`reference: no weight '${name}'`);
  return v;
}

/** y = x W for one row x [n] and W [n, m] stored row-major. */
function rowTimes(x: Float64Array, w: Float64Array, m: number): Float64Array {
  const y = new Float64Array(m);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    for (let j = 0; j < m; j++) y[j]! += xi * w[i * m + j]!;
  }
  return y;
}

function norm(x: Float64Array, c: ModelConfig, w: Weights, prefix: string): Float64Array {
  const D = x.length;
  const gamma = get(w, `${prefix}.weight`);
  const y = new Float64Array(D);
  if (c.norm === 'layernorm') {
    const beta = get(w, `${prefix}.bias`);
    const mean = x.reduce((s, v) => s + v, 0) / D;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / D;
    for (let d = 0; d < D; d++) y[d] = ((x[d]! - mean) / Math.sqrt(variance + c.normEps)) * gamma[d]! + beta[d]!;
  } else {
    const ms = x.reduce((s, v) => s + v * v, 0) / D;
    for (let d = 0; d < D; d++) y[d] = (x[d]! / Math.sqrt(ms + c.normEps)) * gamma[d]!;
  }
  return y;
}

function rope(x: Float64Array, pos: number, base: number): Float64Array {
  const Dh = x.length;
  const half = Dh / 2;
  const y = new Float64Array(Dh);
  for (let j = 0; j < half; j++) {
    const angle = pos * base ** ((-2 * j) / Dh);
    const [c, s] = [Math.cos(angle), Math.sin(angle)];
    y[j] = x[j]! * c - x[j + half]! * s;
    y[j + half] = x[j + half]! * c + x[j]! * s;
  }
  return y;
}

/** The dense FFW of @peer/baselines with exact GELU: W2 gelu(W1 x + b1) + b2. */
function denseFfw(x: Float64Array, w: Weights, prefix: string): Float64Array {
  const b1 = get(w, `${prefix}b1`);
  const H = b1.length;
  const h = rowTimes(x, get(w, `${prefix}w1`), H).map((v, f) => gelu64(v + b1[f]!));
  const b2 = get(w, `${prefix}b2`);
  return rowTimes(h, get(w, `${prefix}w2`), x.length).map((v, d) => v + b2[d]!);
}

/** Logits [B][S][V] of the tokens [B][S]. `ffw(i, x)` overrides the FFW of block i (default: dense). */
export function referenceLogits(
  c: ModelConfig,
  w: Weights,
  tokens: number[][],
  ffw: (block: number, x: Float64Array) => Float64Array = (i, x) => denseFfw(x, w, `blocks.${i}.ffw.`),
): Float64Array[][] {
  const { dim: D, heads: A, vocabSize: V } = c;
  const Dh = D / A;
  const emb = get(w, 'tok_emb.weight');
  return tokens.map((seq) => {
    const S = seq.length;
    let h = seq.map((t, s) => {
      const row = emb.slice(t * D, (t + 1) * D);
      if (c.positions === 'learned') {
        const pos = get(w, 'pos_emb.weight');
        for (let d = 0; d < D; d++) row[d]! += pos[s * D + d]!;
      }
      return row;
    });
    for (let i = 0; i < c.layers; i++) {
      const qkv = h.map((x) => rowTimes(norm(x, c, w, `blocks.${i}.norm1`), get(w, `blocks.${i}.attn.qkv.weight`), 3 * D));
      const attended = h.map(() => new Float64Array(D));
      for (let head = 0; head < A; head++) {
        const part = (s: number, which: number) => qkv[s]!.slice(which * D + head * Dh, which * D + (head + 1) * Dh);
        const q = seq.map((_, s) => (c.positions === 'rope' ? rope(part(s, 0), s, c.ropeBase) : part(s, 0)));
        const k = seq.map((_, s) => (c.positions === 'rope' ? rope(part(s, 1), s, c.ropeBase) : part(s, 1)));
        const v = seq.map((_, s) => part(s, 2));
        for (let s = 0; s < S; s++) {
          const scores = Array.from({ length: s + 1 }, (_, j) => q[s]!.reduce((acc, qe, e) => acc + qe * k[j]![e]!, 0) / Math.sqrt(Dh));
          const max = Math.max(...scores);
          const p = scores.map((x) => Math.exp(x - max));
          const z = p.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= s; j++) for (let e = 0; e < Dh; e++) attended[s]![head * Dh + e]! += (p[j]! / z) * v[j]![e]!;
        }
      }
      h = h.map((x, s) => {
        const o = rowTimes(attended[s]!, get(w, `blocks.${i}.attn.proj.weight`), D);
        return x.map((xv, d) => xv + o[d]!);
      });
      h = h.map((x) => {
        const y = ffw(i, norm(x, c, w, `blocks.${i}.norm2`));
        return x.map((xv, d) => xv + y[d]!);
      });
    }
    return h.map((x) => {
      const hf = norm(x, c, w, 'norm_f');
      if (!c.tieEmbeddings) return rowTimes(hf, get(w, 'lm_head.weight'), V);
      const logits = new Float64Array(V);
      for (let t = 0; t < V; t++) for (let d = 0; d < D; d++) logits[t]! += hf[d]! * emb[t * D + d]!;
      return logits;
    });
  });
}

/** Mean cross entropy of the logits against targets [B][S]. */
export function referenceLoss(logits: Float64Array[][], targets: number[][]): number {
  let total = 0;
  let count = 0;
  logits.forEach((seq, b) =>
    seq.forEach((row, s) => {
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
      total += lse - row[targets[b]![s]!]!;
      count++;
    }),
  );
  return total / count;
}

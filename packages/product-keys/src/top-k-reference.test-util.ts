// Plain references for the top-k and retrieval tests; not part of the build.
// Axes: T tokens, h heads, n = sqrt(N) sub-keys per half, dk key width, k results.
import type { TestRng } from '@peer/test-utils';

/** Plain reference: sort (value desc, index asc) and keep k. */
export function sortedTopK(row: ArrayLike<number>, k: number): { values: number[]; indices: number[] } {
  const order = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => (row[b]! === row[a]! ? a - b : row[b]! - row[a]!));
  const indices = order.slice(0, k);
  return { values: indices.map((i) => row[i]!), indices };
}

/** Random rows; `levels` > 0 draws from that many distinct values (many exact ties). */
export function randomRows(rng: TestRng, rows: number, width: number, levels: number): Float32Array {
  if (levels === 0) return Float32Array.from(rng.normals(rows * width, 1));
  return Float32Array.from({ length: rows * width }, () => rng.int(levels) - (levels >> 1));
}

/** Retrieval inputs as plain arrays: queries [T, h, 2dk], sub-keys [sets, n, dk] (sets 1 when shared, else h). */
export interface RetrievalInputs {
  T: number;
  h: number;
  sqrtN: number;
  dk: number;
  sets: number;
  q: ArrayLike<number>;
  c1: ArrayLike<number>;
  c2: ArrayLike<number>;
}

/** Smallest gap between consecutive full-key scores among the best k + 1 of any (t, head), float64. */
export function smallestTopGap(x: RetrievalInputs, k: number): number {
  let gap = Infinity;
  for (let t = 0; t < x.T; t++) {
    for (let head = 0; head < x.h; head++) {
      const set = x.sets === 1 ? 0 : head;
      const base = (t * x.h + head) * 2 * x.dk;
      const scores: number[] = [];
      for (let i = 0; i < x.sqrtN; i++) {
        for (let j = 0; j < x.sqrtN; j++) {
          let s = 0;
          for (let d = 0; d < x.dk; d++) {
            s += x.q[base + d]! * x.c1[(set * x.sqrtN + i) * x.dk + d]! + x.q[base + x.dk + d]! * x.c2[(set * x.sqrtN + j) * x.dk + d]!;
          }
          scores.push(s);
        }
      }
      scores.sort((a, b) => b - a);
      for (let j = 0; j < Math.min(k, scores.length - 1); j++) gap = Math.min(gap, scores[j]! - scores[j + 1]!);
    }
  }
  return gap;
}

// Plain references for the top-k tests (row-top-k.test.ts, heap-top-k.test.ts); not part of the build.
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

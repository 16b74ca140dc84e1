// The occurrences of a mixture call (table rows, [L]) sorted by row, stably: the one sort of a step,
// shared by the mixture's grouped passes (HostMixture) and the row gradients' grouping
// (RowSparseGrad.groupOccurrences), which both ask for the same indices and get the last sort again.
//
// Axes: L occurrences, N table rows.

/** Bits of a row index of a table of `rows` rows (at least 1). */
export function rowBits(rows: number): number {
  return Math.max(1, 32 - Math.clz32(rows - 1));
}

/** Bits of a row index sorted per radix pass in groupOccurrences (2^11 counters: 8 KiB, in L1). */
const RADIX_BITS = 11;

/**
 * The radix sort's scratch, shared by every gradient (one sort runs at a time), and what it holds:
 * the last sort's rows and order, with a copy of the indices they sort. A PEER layer's two tables
 * group the same selection in one step, so the second grouping takes the first's sort after one
 * comparison of the indices.
 */
const sortScratch = {
  keys: [new Int32Array(0), new Int32Array(0)] as [Int32Array, Int32Array],
  perm: [new Int32Array(0), new Int32Array(0)] as [Int32Array, Int32Array],
  counts: new Int32Array(1 << RADIX_BITS),
  /** The sorted indices (a copy), their row bits, and where the sort's result lies (undefined: none). */
  indices: new Int32Array(0),
  bits: 0,
  result: undefined as RowSort | undefined,
};

/** A sort of occurrences by row: the rows ascending, the occurrence each came from, and where each group of equal rows ends. */
export interface RowSort {
  rows: Int32Array;
  perm: Int32Array;
  /** ends[g]: one past the last position of group g in `rows` / `perm` [U]. */
  ends: Int32Array;
}

/** Whether `indices` are the indices of the last sort, over as many row bits. */
function sameAsLastSort(indices: Int32Array, bits: number): boolean {
  const n = indices.length;
  if (!sortScratch.result || sortScratch.result.rows.length !== n || sortScratch.bits !== bits) return false;
  const last = sortScratch.indices;
  for (let i = 0; i < n; i++) if (last[i] !== indices[i]) return false;
  return true;
}

/**
 * The occurrences `indices` (rows of a table of `bits` row bits) sorted by row, stably (equal rows
 * keep their order): the rows and the occurrence each came from, as views of the shared scratch,
 * valid until the next sort. A least-significant-digit radix sort in passes of at most RADIX_BITS
 * bits whose counters stay in cache, so that no pass reads a row-indexed array at random; the last
 * sort again when the indices are the same.
 */
export function sortByRow(indices: Int32Array, bits: number): RowSort {
  const n = indices.length;
  if (sameAsLastSort(indices, bits)) return sortScratch.result!;
  const scratch = sortScratch;
  if (scratch.indices.length < n) {
    const length = Math.max(n, 2 * scratch.indices.length);
    scratch.keys = [new Int32Array(length), new Int32Array(length)];
    scratch.perm = [new Int32Array(length), new Int32Array(length)];
    scratch.indices = new Int32Array(length);
  }
  const passes = Math.ceil(bits / RADIX_BITS);
  const width = Math.ceil(bits / passes);
  const mask = (1 << width) - 1;
  const counts = scratch.counts;
  let keys = indices;
  let perm: Int32Array | undefined;
  for (let p = 0; p < passes; p++) {
    const shift = p * width;
    const [outKeys, outPerm] = [scratch.keys[p & 1]!, scratch.perm[p & 1]!];
    counts.fill(0, 0, mask + 1);
    for (let i = 0; i < n; i++) counts[(keys[i]! >>> shift) & mask]!++;
    let total = 0;
    for (let b = 0; b <= mask; b++) {
      const c = counts[b]!;
      counts[b] = total;
      total += c;
    }
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      const at = counts[(key >>> shift) & mask]!++;
      outKeys[at] = key;
      outPerm[at] = perm ? perm[i]! : i;
    }
    keys = outKeys;
    perm = outPerm;
  }
  scratch.indices.set(indices);
  scratch.bits = bits;
  const rows = keys.subarray(0, n);
  scratch.result = { rows, perm: perm!.subarray(0, n), ends: groupEnds(rows) };
  return scratch.result;
}

/** Where each group of equal values of the ascending `rows` ends. */
function groupEnds(rows: Int32Array): Int32Array {
  const n = rows.length;
  let u = 0;
  for (let i = 0; i < n; i++) if (i === 0 || rows[i] !== rows[i - 1]) u++;
  const ends = new Int32Array(u);
  for (let i = 1, g = 0; i < n; i++) if (rows[i] !== rows[i - 1]) ends[g++] = i;
  if (u > 0) ends[u - 1] = n;
  return ends;
}

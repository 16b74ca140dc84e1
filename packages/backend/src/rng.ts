// A seeded, serializable random stream for weight initialization and data shuffling.
// xoroshiro128+ (pure-rand): fast, jumpable (independent sub-streams), state is four int32s.
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';
import type { JumpableRandomGenerator } from 'pure-rand/types/JumpableRandomGenerator';

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

export class Rng {
  private gen: JumpableRandomGenerator;
  private spareNormal: number | undefined;

  constructor(seed: number | readonly number[]) {
    if (typeof seed === 'number') {
      if (!Number.isSafeInteger(seed)) throw new Error(`seed must be a safe integer, got ${seed}`);
      // The generator takes 32 bits: fold the high bits in so that large seeds (e.g. a clock) stay distinct.
      this.gen = xoroshiro128plus((seed | 0) ^ (Math.trunc(seed / TWO_POW_32) | 0));
    } else {
      if (seed.length !== 4 || seed.some((s) => !Number.isInteger(s))) {
        throw new Error(`rng state must be 4 integers, got ${JSON.stringify(seed)}`);
      }
      this.gen = xoroshiro128plusFromState(seed);
    }
  }

  /** The generator state; `new Rng(state)` continues the exact same stream. */
  state(): number[] {
    // A pending second Box-Muller sample would be lost; drop it so that state() fully describes the stream.
    this.spareNormal = undefined;
    return [...this.gen.getState()];
  }

  /**
   * An independent stream: the child starts 2^64 draws ahead of this stream, and this stream
   * jumps past it, so successive forks (and the parent) never overlap in practice.
   */
  fork(): Rng {
    const child = new Rng(this.gen.getState());
    child.gen.jump();
    this.gen.jump();
    this.gen.jump();
    this.spareNormal = undefined;
    return child;
  }

  /** Uniform float64 in [0, 1) with 53 random bits. */
  float(): number {
    const hi = (this.gen.next() >>> 0) >>> 5; // 27 bits
    const lo = (this.gen.next() >>> 0) >>> 6; // 26 bits
    return (hi * 67108864 + lo) / TWO_POW_53;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`int(n) needs a positive integer, got ${n}`);
    if (n <= TWO_POW_32) {
      // Rejection sampling keeps it exactly uniform.
      const limit = TWO_POW_32 - (TWO_POW_32 % n);
      for (;;) {
        const u = this.gen.next() >>> 0;
        if (u < limit) return u % n;
      }
    }
    return Math.floor(this.float() * n);
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const s = this.spareNormal;
      this.spareNormal = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.float();
    const v = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fills `out` with normal(mean, std) samples and returns it. */
  fillNormal<T extends Float32Array | Float64Array>(out: T, mean = 0, std = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** Fills `out` with uniform [lo, hi) samples and returns it. */
  fillUniform<T extends Float32Array | Float64Array>(out: T, lo: number, hi: number): T {
    const span = hi - lo;
    for (let i = 0; i < out.length; i++) out[i] = lo + span * this.float();
    return out;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(items: T[] | Int32Array | Uint32Array): typeof items {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }
}

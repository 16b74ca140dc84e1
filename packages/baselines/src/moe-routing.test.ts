import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import { expertChoiceCapacity, expertChoiceDispatch, expertChoiceTopTokens, tokenChoiceCapacity, tokenChoiceRouting, type MoeDispatch } from './moe-routing.js';

function randomProbs(rng: ReturnType<typeof testRng>, tokens: number, experts: number, skew = 1): Float64Array {
  const p = new Float64Array(tokens * experts);
  for (let t = 0; t < tokens; t++) {
    let z = 0;
    for (let e = 0; e < experts; e++) {
      // A few popular experts make capacity bind.
      p[t * experts + e] = Math.exp(skew * rng.normal() + (e < 2 ? skew : 0));
      z += p[t * experts + e]!;
    }
    for (let e = 0; e < experts; e++) p[t * experts + e]! /= z;
  }
  return p;
}

/** Invariants every dispatch satisfies, checked by brute force. */
function checkDispatchConsistent(d: MoeDispatch): void {
  const { tokens: T, experts: E, capacity: C } = d;
  const slots = E * C;
  for (let e = 0; e < E; e++) {
    let filled = 0;
    for (let c = 0; c < C; c++) if (d.slotToken[e * C + c] !== T) filled++;
    expect(filled).toBe(d.expertLoad[e]);
    expect(filled).toBeLessThanOrEqual(C);
    // filled slots come first
    for (let c = 0; c < filled; c++) expect(d.slotToken[e * C + c]).not.toBe(T);
  }
  let dropped = 0;
  for (let t = 0; t < T; t++) {
    const mine: number[] = [];
    for (let s = 0; s < slots; s++) if (d.slotToken[s] === t) mine.push(s);
    const listed = Array.from(d.tokenSlots.subarray(t * d.slotsPerToken, (t + 1) * d.slotsPerToken)).filter((s) => s !== slots);
    expect(listed.sort((a, b) => a - b)).toEqual(mine);
    if (mine.length === 0) dropped++;
    for (let e = 0; e < E; e++) {
      const s = d.pairSlot[t * E + e]!;
      const expected = mine.find((m) => Math.floor(m / C) === e) ?? slots;
      expect(s).toBe(expected);
    }
  }
  expect(d.droppedTokens).toBe(dropped);
  for (let s = 0; s < slots; s++) {
    const t = d.slotToken[s]!;
    expect(d.slotPair[s]).toBe(t === T ? T * E : t * E + Math.floor(s / C));
  }
}

describe('token-choice routing', () => {
  it('computes the capacity as documented', () => {
    expect(tokenChoiceCapacity(512, 8, 1, 1.25)).toBe(80);
    expect(tokenChoiceCapacity(512, 8, 2, 1.25)).toBe(160);
    expect(tokenChoiceCapacity(10, 3, 1, 1)).toBe(4);
    expect(tokenChoiceCapacity(4, 2, 2, 8)).toBe(4); // clamped to T
    expect(tokenChoiceCapacity(3, 100, 1, 0.1)).toBe(1); // at least 1
  });

  for (const topK of [1, 2, 3]) {
    it(`respects capacity, priorities and counts dropped assignments (K = ${topK})`, () => {
      const rng = testRng();
      const T = 37;
      const E = 6;
      const probs = randomProbs(rng, T, E, 1.5);
      const capacity = tokenChoiceCapacity(T, E, topK, 0.8);
      const { dispatch, choices, requestedLoad } = tokenChoiceRouting(probs, T, E, topK, capacity);
      checkDispatchConsistent(dispatch);
      // choices are the top-K by probability, best first
      for (let t = 0; t < T; t++) {
        const sorted = Array.from({ length: E }, (_, e) => e).sort((a, b) => probs[t * E + b]! - probs[t * E + a]!);
        expect(Array.from(choices.subarray(t * topK, (t + 1) * topK)), `seed ${rng.seed} token ${t}`).toEqual(sorted.slice(0, topK));
      }
      // brute force of the documented policy: rank j for all tokens before rank j+1, in token order
      const load = new Array<number>(E).fill(0);
      let dropped = 0;
      const kept = new Set<number>();
      for (let j = 0; j < topK; j++) {
        for (let t = 0; t < T; t++) {
          const e = choices[t * topK + j]!;
          if (load[e]! < capacity) {
            load[e]!++;
            kept.add(t * E + e);
          } else dropped++;
        }
      }
      expect(Array.from(dispatch.expertLoad)).toEqual(load);
      expect(dispatch.droppedAssignments).toBe(dropped);
      expect(dropped).toBeGreaterThan(0); // the test exercises dropping
      const keptCount = Array.from(dispatch.expertLoad).reduce((a, b) => a + b, 0);
      expect(keptCount + dropped).toBe(T * topK);
      for (let pair = 0; pair < T * E; pair++) expect(dispatch.pairSlot[pair]! < E * capacity).toBe(kept.has(pair));
      const req = new Array<number>(E).fill(0);
      for (const e of choices) req[e]!++;
      expect(Array.from(requestedLoad)).toEqual(req);
    });
  }

  it('drops nothing when capacity covers every assignment', () => {
    const rng = testRng();
    const T = 20;
    const E = 4;
    const { dispatch } = tokenChoiceRouting(randomProbs(rng, T, E), T, E, 2, T);
    expect(dispatch.droppedAssignments).toBe(0);
    expect(dispatch.droppedTokens).toBe(0);
    checkDispatchConsistent(dispatch);
  });

  it('rejects bad arguments with a message naming them', () => {
    expect(() => tokenChoiceRouting(new Float64Array(6), 3, 2, 3, 1)).toThrow(/topK \(3\) must be at most experts \(2\)/);
    expect(() => tokenChoiceRouting(new Float64Array(5), 3, 2, 1, 1)).toThrow(/probs has 5 values, expected tokens \* experts = 6/);
    expect(() => tokenChoiceRouting(new Float64Array(6), 3, 2, 1, 0)).toThrow(/capacity must be an integer >= 1, got 0/);
  });
});

describe('expert-choice routing', () => {
  it('computes the capacity as documented', () => {
    expect(expertChoiceCapacity(512, 16, 1)).toBe(32);
    expect(expertChoiceCapacity(512, 16, 2)).toBe(64);
    expect(expertChoiceCapacity(10, 4, 1)).toBe(3);
    expect(expertChoiceCapacity(3, 1, 4)).toBe(3);
  });

  it('gives every expert exactly C tokens, its top C, and counts unpicked tokens', () => {
    const rng = testRng();
    const T = 41;
    const E = 7;
    const probs = randomProbs(rng, T, E, 2);
    const C = expertChoiceCapacity(T, E, 1);
    const top = expertChoiceTopTokens(probs, T, E, C);
    const d = expertChoiceDispatch(top, T, E, C);
    checkDispatchConsistent(d);
    expect(Array.from(d.expertLoad)).toEqual(new Array<number>(E).fill(C));
    for (let e = 0; e < E; e++) {
      const picked = new Set(Array.from(top.subarray(e * C, (e + 1) * C)));
      const threshold = Math.min(...[...picked].map((t) => probs[t * E + e]!));
      for (let t = 0; t < T; t++) if (!picked.has(t)) expect(probs[t * E + e]!, `seed ${rng.seed}`).toBeLessThan(threshold);
    }
    const pickedByAny = new Set(Array.from(top));
    expect(d.droppedTokens).toBe(T - pickedByAny.size);
    expect(d.droppedAssignments).toBe(0);
  });

  it('rejects an expert picking a token twice or a token out of range', () => {
    expect(() => expertChoiceDispatch(Int32Array.of(0, 0, 1, 2), 3, 2, 2)).toThrow(/expert 0 picked token 0 twice/);
    expect(() => expertChoiceDispatch(Int32Array.of(0, 5), 3, 1, 2)).toThrow(/topTokens\[1\] = 5 is not a token index in \[0, 3\)/);
  });
});

// Routing for the MoE layers, computed in plain JS from the router probabilities (outside the
// tape: routing is a discrete choice; the gate values stay differentiable in the layer).
//
// Axes: T tokens, E experts, C capacity (slots per expert), K top-k per token, M most slots any
// token occupies. A slot is `e * C + c`; a pair is `t * E + e`.

/**
 * Who goes where. Empty entries point one past the end (token T, slot E*C, pair T*E), so that the
 * layer can gather them from a zero row appended to the source.
 */
export interface MoeDispatch {
  tokens: number;
  experts: number;
  capacity: number;
  /** [E*C] token in each slot, T for an empty slot. */
  slotToken: Int32Array;
  /** [E*C] pair (t*E + e) of each slot, T*E for an empty slot. */
  slotPair: Int32Array;
  /** M, the width of `tokenSlots`. */
  slotsPerToken: number;
  /** [T*M] the slots that process token t, padded with E*C. */
  tokenSlots: Int32Array;
  /** [T*E] the slot that processes pair (t, e), E*C where expert e does not process token t. */
  pairSlot: Int32Array;
  /** [E] filled slots per expert. */
  expertLoad: Int32Array;
  /** Token-choice assignments refused because their expert was full (0 for expert choice). */
  droppedAssignments: number;
  /** Tokens no expert processes: their MoE output is 0, only the residual carries them. */
  droppedTokens: number;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got ${value}`);
}

/** Token choice: C = ceil(T * K * capacityFactor / E), clamped to [1, T] (an expert sees a token at most once). */
export function tokenChoiceCapacity(tokens: number, experts: number, topK: number, capacityFactor: number): number {
  return Math.min(tokens, Math.max(1, Math.ceil((tokens * topK * capacityFactor) / experts)));
}

/** Expert choice: C = ceil(T * capacityFactor / E), clamped to [1, T]. */
export function expertChoiceCapacity(tokens: number, experts: number, capacityFactor: number): number {
  return Math.min(tokens, Math.max(1, Math.ceil((tokens * capacityFactor) / experts)));
}

/** Fills the inverse maps of a dispatch whose `slotToken` is set. */
function finishDispatch(tokens: number, experts: number, capacity: number, slotToken: Int32Array, droppedAssignments: number): MoeDispatch {
  const slots = experts * capacity;
  const perToken = new Int32Array(tokens);
  const expertLoad = new Int32Array(experts);
  const slotPair = new Int32Array(slots).fill(tokens * experts);
  const pairSlot = new Int32Array(tokens * experts).fill(slots);
  for (let s = 0; s < slots; s++) {
    const t = slotToken[s]!;
    if (t === tokens) continue;
    const e = Math.floor(s / capacity);
    perToken[t]!++;
    expertLoad[e]!++;
    slotPair[s] = t * experts + e;
    pairSlot[t * experts + e] = s;
  }
  let slotsPerToken = 1;
  let droppedTokens = 0;
  for (let t = 0; t < tokens; t++) {
    slotsPerToken = Math.max(slotsPerToken, perToken[t]!);
    if (perToken[t] === 0) droppedTokens++;
  }
  const tokenSlots = new Int32Array(tokens * slotsPerToken).fill(slots);
  const filled = new Int32Array(tokens);
  for (let s = 0; s < slots; s++) {
    const t = slotToken[s]!;
    if (t === tokens) continue;
    tokenSlots[t * slotsPerToken + filled[t]!] = s;
    filled[t]!++;
  }
  return { tokens, experts, capacity, slotToken, slotPair, slotsPerToken, tokenSlots, pairSlot, expertLoad, droppedAssignments, droppedTokens };
}

export interface TokenChoiceRouting {
  dispatch: MoeDispatch;
  /** [T*K] the top-k experts of each token, best first (before capacity). */
  choices: Int32Array;
  /** [E] assignments per expert before capacity (the f_e of the load-balancing loss, times T*K). */
  requestedLoad: Int32Array;
}

/**
 * Token choice (Switch K = 1, GShard K = 2): each token picks its top-K experts by router
 * probability (ties: the lower expert index). Capacity is filled first-come first-served, all
 * first choices in token order before any second choice (GShard); assignments beyond capacity are
 * dropped.
 */
export function tokenChoiceRouting(probs: ArrayLike<number>, tokens: number, experts: number, topK: number, capacity: number): TokenChoiceRouting {
  checkCount('tokens', tokens, 1);
  checkCount('experts', experts, 1);
  checkCount('topK', topK, 1);
  checkCount('capacity', capacity, 1);
  if (topK > experts) throw new Error(`topK (${topK}) must be at most experts (${experts})`);
  if (probs.length !== tokens * experts) throw new Error(`probs has ${probs.length} values, expected tokens * experts = ${tokens * experts}`);
  const choices = new Int32Array(tokens * topK);
  const requestedLoad = new Int32Array(experts);
  const taken = new Uint8Array(experts);
  for (let t = 0; t < tokens; t++) {
    taken.fill(0);
    const row = t * experts;
    for (let j = 0; j < topK; j++) {
      let best = -1;
      let bestP = -Infinity;
      for (let e = 0; e < experts; e++) {
        const p = probs[row + e]!;
        if (!taken[e] && p > bestP) {
          best = e;
          bestP = p;
        }
      }
      // NaN probabilities never compare greater: fall back to the first free expert.
      if (best < 0) best = taken.indexOf(0);
      taken[best] = 1;
      choices[t * topK + j] = best;
      requestedLoad[best]!++;
    }
  }
  const slotToken = new Int32Array(experts * capacity).fill(tokens);
  const load = new Int32Array(experts);
  let dropped = 0;
  for (let j = 0; j < topK; j++) {
    for (let t = 0; t < tokens; t++) {
      const e = choices[t * topK + j]!;
      if (load[e]! < capacity) {
        slotToken[e * capacity + load[e]!] = t;
        load[e]!++;
      } else {
        dropped++;
      }
    }
  }
  return { dispatch: finishDispatch(tokens, experts, capacity, slotToken, dropped), choices, requestedLoad };
}

/**
 * Expert choice (Zhou et al. 2022): `topTokens` holds, for each expert, the C tokens it picked
 * (its top-C router probabilities over the batch). Every slot is filled; a token may be picked by
 * several experts or by none.
 */
export function expertChoiceDispatch(topTokens: ArrayLike<number>, tokens: number, experts: number, capacity: number): MoeDispatch {
  checkCount('tokens', tokens, 1);
  checkCount('experts', experts, 1);
  checkCount('capacity', capacity, 1);
  if (capacity > tokens) throw new Error(`capacity (${capacity}) must be at most tokens (${tokens})`);
  if (topTokens.length !== experts * capacity) throw new Error(`topTokens has ${topTokens.length} values, expected experts * capacity = ${experts * capacity}`);
  const slotToken = new Int32Array(experts * capacity);
  const seen = new Int32Array(tokens).fill(-1);
  for (let s = 0; s < slotToken.length; s++) {
    const t = topTokens[s]!;
    if (!Number.isInteger(t) || t < 0 || t >= tokens) throw new Error(`topTokens[${s}] = ${t} is not a token index in [0, ${tokens})`);
    const e = Math.floor(s / capacity);
    if (seen[t] === e) throw new Error(`expert ${e} picked token ${t} twice`);
    seen[t] = e;
    slotToken[s] = t;
  }
  return finishDispatch(tokens, experts, capacity, slotToken, 0);
}

/** Top-C tokens per expert from probabilities [T, E], in plain JS (ties: the lower token). A reference for tests and small batches. */
export function expertChoiceTopTokens(probs: ArrayLike<number>, tokens: number, experts: number, capacity: number): Int32Array {
  const out = new Int32Array(experts * capacity);
  const order = Array.from({ length: tokens }, (_, t) => t);
  for (let e = 0; e < experts; e++) {
    order.sort((a, b) => probs[b * experts + e]! - probs[a * experts + e]! || a - b);
    for (let c = 0; c < capacity; c++) out[e * capacity + c] = order[c]!;
  }
  return out;
}

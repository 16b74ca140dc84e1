// Compute accounting. Forward FLOPs per token come from the model (attention included, a
// multiply-add counts 2); a training step costs 3x the forward (forward + backward of twice its
// cost, the usual 6N rule), over every token of the batch.
import { UsageError } from '../errors.js';

/** Tokens per optimizer step. */
export function tokensPerStep(data: { batchSize: number; seqLen: number }): number {
  return data.batchSize * data.seqLen;
}

/** Training FLOPs of one step: 3 * forward FLOPs per token * tokens per step. */
export function flopsPerStep(forwardFlopsPerToken: number, tokens: number): number {
  return 3 * forwardFlopsPerToken * tokens;
}

/** Steps a compute budget buys: floor(budget / flopsPerStep); a budget below one step is an error. */
export function stepsForBudget(budget: number, stepFlops: number): number {
  if (!(stepFlops > 0)) throw new Error(`stepsForBudget: FLOPs per step must be positive, got ${stepFlops}`);
  const steps = Math.floor(budget / stepFlops);
  if (steps < 1) {
    throw new UsageError(
      `train.flops = ${budget.toExponential(3)} is less than one training step of this model (${stepFlops.toExponential(3)} FLOPs)`,
    );
  }
  return steps;
}

/** Human-readable FLOPs / parameter counts: 1.23e15 -> "1.23P". */
export function formatCount(x: number): string {
  const units: [number, string][] = [
    [1e18, 'E'],
    [1e15, 'P'],
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, unit] of units) if (Math.abs(x) >= scale) return `${(x / scale).toPrecision(3)}${unit}`;
  return String(x);
}

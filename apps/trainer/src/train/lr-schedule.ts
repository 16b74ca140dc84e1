// Learning rate per step: linear warmup, then cosine decay to `minLr` at the last step (nanoGPT).

export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Learning rate at the last step. */
  minLr: number;
  warmupSteps: number;
  /** Total optimizer steps of the run. */
  totalSteps: number;
}

/**
 * The learning rate of 0-based step `step`. Warmup ramps `lr * (step + 1) / (warmup + 1)` so that the
 * first step already moves; after warmup a half cosine goes from `lr` to `minLr` at `totalSteps - 1`.
 */
export function learningRate(step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1);
  const decaySteps = s.totalSteps - 1 - s.warmupSteps;
  if (decaySteps <= 0) return s.lr;
  const progress = Math.min(1, (step - s.warmupSteps) / decaySteps);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (s.lr - s.minLr);
}

// The training loop. One step, top to bottom:
//   batch -> loss + aux and gradients of the dense variables (tf.variableGrads; the sparse layers
//   accumulate their row gradients on the side) -> stop on a non-finite loss -> clip by global norm
//   -> AdamW (warmup + cosine lr, decoupled decay on matrices) -> sparse tables' step -> log, eval,
//   checkpoint.
// Everything random (init, batch order, dropout) is seeded, so the same config gives the same numbers,
// and a run resumed from a checkpoint continues exactly where it stopped.
//
// Reads from the engine: the loss, the auxiliary loss and the gradient norm stay tensors until one
// packed read of those three numbers per step, awaited before anything is updated: a non-finite step
// must stop the run with nothing applied, and the norm decides the clipping scale. On wasm and cpu
// the values are the same ones the synchronous reads gave (same ops, same order of updates). On a
// device engine (webgpu) it is the only read of the step: asynchronous, 12 bytes, no dataSync.
//
// Axes: B batch, S sequence.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from '@peer/backend';
import type { Batcher } from '@peer/data';
import { checkTokenIds } from '@peer/model';
import type { TrainConfig } from '../config/schema.js';
import type { MetricsRecord } from '../run/run-folder.js';
import type { AdamW } from './adamw.js';
import { clipToNorm, globalNorm } from './clip-grads.js';
import type { EvalResult } from './evaluate.js';
import { reportHealth, type ExpertHealthMonitor } from './expert-health.js';
import type { LanguageModel } from './language-model.js';
import { learningRate, type LrSchedule } from './lr-schedule.js';
import type { ProgressReporter } from './progress.js';

export interface LoopPosition {
  /** Optimizer steps completed. */
  step: number;
  /** Training tokens consumed. */
  tokens: number;
  /** Seconds spent in training steps (not eval, not checkpoints), over all processes of the run. */
  trainSeconds: number;
  /** Wall seconds of the loop (steps, evals, checkpoints), over all processes of the run. */
  wallSeconds: number;
}

export interface TrainLoopOptions {
  model: LanguageModel;
  optimizer: AdamW;
  batcher: Batcher;
  config: TrainConfig;
  totalSteps: number;
  /** Where this process starts (0, or a checkpoint's position). */
  start: LoopPosition;
  /** Training FLOPs of one step, for MFU. */
  flopsPerStep: number;
  /** Reference matMul rate of this engine in FLOP/s (undefined: no MFU). */
  peakFlopsPerSecond: number | undefined;
  progress: ProgressReporter;
  /** Validation on `maxBatches` batches (0 = whole split). */
  evaluate: (maxBatches: number) => EvalResult | Promise<EvalResult>;
  /**
   * Saves a checkpoint of the current state at `position` (the batcher's state is read by the
   * caller). A returned promise is awaited (device engines read the state asynchronously).
   */
  checkpoint: (position: LoopPosition) => unknown;
  writeMetrics: (record: MetricsRecord) => void;
  /** Polled after every step: true asks the loop to checkpoint and return (Ctrl-C). */
  stopRequested: () => boolean;
  /**
   * Expert health of the sparse layers: the loop opens a window at its start and reports and
   * reopens it at each evaluation; the caller reports the last one (with the final evaluation).
   */
  health?: ExpertHealthMonitor;
}

export type LoopOutcome =
  | { kind: 'completed'; position: LoopPosition }
  | { kind: 'interrupted'; position: LoopPosition }
  | { kind: 'non-finite'; position: LoopPosition; what: string; value: number };

export function scheduleOf(config: TrainConfig, totalSteps: number): LrSchedule {
  const o = config.optim;
  return o.schedule === 'cosine'
    ? { lr: o.lr, minLr: o.minLr, warmupSteps: o.warmupSteps, totalSteps }
    : { lr: o.lr, minLr: o.lr, warmupSteps: o.warmupSteps, totalSteps };
}

interface StepResult {
  loss: number;
  auxLoss: number | undefined;
  gradNorm: number;
}

/** Reads scalars with one asynchronous read (a device engine's only way; exact copies elsewhere). */
async function readScalars(scalars: readonly tf.Scalar[]): Promise<number[]> {
  const packed = tf.stack(scalars as tf.Scalar[]);
  try {
    return Array.from(await packed.data());
  } finally {
    packed.dispose();
  }
}

/** Forward, backward, clip, AdamW, sparse step. Returns the bad value (nothing updated) on a non-finite loss or gradient. */
async function trainStep(o: TrainLoopOptions, variables: tf.Variable[], inputs: Int32Array, targets: Int32Array, lr: number): Promise<StepResult | { bad: string; value: number }> {
  const { batchSize: B, seqLen: S } = o.config.data;
  if (onDevice()) {
    // The model checks uploaded ids only where it can read them back synchronously.
    checkTokenIds(inputs, S, o.config.model.vocabSize, 'inputs');
    checkTokenIds(targets, S, o.config.model.vocabSize, 'targets');
  }
  let lossT: tf.Scalar | undefined;
  let auxT: tf.Scalar | undefined;
  const { value, grads } = tf.tidy(() => {
    const x = tf.tensor2d(inputs, [B, S], 'int32');
    const y = tf.tensor2d(targets, [B, S], 'int32');
    return tf.variableGrads(() => {
      const out = o.model.loss(x, y, { training: true });
      lossT = tf.keep(out.loss);
      if (out.auxLoss) auxT = tf.keep(out.auxLoss);
      return out.auxLoss ? tf.add(out.loss, out.auxLoss) : out.loss;
    }, variables);
  });
  const gradList = variables.map((v) => grads[v.name]);
  try {
    const missing = variables.findIndex((_, i) => !gradList[i]);
    if (missing >= 0) throw new Error(`no gradient for variable '${variables[missing]!.name}': it does not take part in the loss`);
    const present = gradList as tf.Tensor[];
    const normT = globalNorm(present);
    let read: number[];
    try {
      read = await readScalars(auxT ? [lossT!, auxT, normT] : [lossT!, normT]);
    } finally {
      tf.dispose([value, lossT!, normT, ...(auxT ? [auxT] : [])]);
    }
    const loss = read[0]!;
    const auxLoss = auxT ? read[1] : undefined;
    const norm = read[read.length - 1]!;
    if (!Number.isFinite(loss) || (auxLoss !== undefined && !Number.isFinite(auxLoss))) {
      o.model.zeroSparseGrads();
      return Number.isFinite(loss) ? { bad: 'auxiliary loss', value: auxLoss! } : { bad: 'loss', value: loss };
    }
    if (!Number.isFinite(norm)) {
      o.model.zeroSparseGrads();
      return { bad: 'gradient norm', value: norm };
    }
    const clipped = clipToNorm(present, norm, o.config.optim.gradClip);
    try {
      o.optimizer.apply(clipped, lr);
    } finally {
      tf.dispose(clipped);
    }
    const sparseScale = o.config.optim.sparseSchedule === 'schedule' ? lr / o.config.optim.lr : 1;
    o.model.sparseStep(sparseScale);
    return { loss, auxLoss, gradNorm: norm };
  } finally {
    tf.dispose(Object.values(grads));
  }
}

/** Runs steps from `start.step` to `totalSteps` (or until stopped). */
export async function trainLoop(o: TrainLoopOptions): Promise<LoopOutcome> {
  const { config, totalSteps } = o;
  const { evalEvery, checkpointEvery, logEvery } = config.train;
  const tokensPerStep = config.data.batchSize * config.data.seqLen;
  const schedule = scheduleOf(config, totalSteps);
  const variables = o.model.trainableVariables();
  const position: LoopPosition = { ...o.start };
  // throughput over the steps since the last log line
  let windowSteps = 0;
  let windowSeconds = 0;
  let lastCheckpoint = position.step;

  let wallMark = performance.now();
  const tickWall = () => {
    const now = performance.now();
    position.wallSeconds += (now - wallMark) / 1000;
    wallMark = now;
  };

  o.health?.start(position.step);
  while (position.step < totalSteps) {
    const step = position.step;
    const lr = learningRate(step, schedule);
    const t0 = performance.now();
    const batch = o.batcher.next();
    const result = await trainStep(o, variables, batch.inputs, batch.targets, lr);
    if ('bad' in result) {
      tickWall();
      return { kind: 'non-finite', position: { ...position }, what: result.bad, value: result.value };
    }
    const seconds = (performance.now() - t0) / 1000;
    position.step = step + 1;
    position.tokens += tokensPerStep;
    position.trainSeconds += seconds;
    windowSteps++;
    windowSeconds += seconds;

    const tokensPerSecond = (windowSteps * tokensPerStep) / windowSeconds;
    const mfu = o.peakFlopsPerSecond ? (windowSteps * o.flopsPerStep) / windowSeconds / o.peakFlopsPerSecond : undefined;
    const logNow = position.step % logEvery === 0 || position.step === totalSteps;
    o.progress.update({ step: position.step, loss: result.loss, lr, tokensPerSecond, mfu }, logNow);
    if (logNow) {
      o.writeMetrics({
        kind: 'train',
        step: position.step,
        tokens: position.tokens,
        loss: result.loss,
        ...(result.auxLoss !== undefined ? { aux_loss: result.auxLoss } : {}),
        lr,
        grad_norm: result.gradNorm,
        tokens_per_s: tokensPerSecond,
        mfu: mfu ?? null,
        train_seconds: position.trainSeconds,
      });
      windowSteps = 0;
      windowSeconds = 0;
    }

    if (evalEvery > 0 && position.step % evalEvery === 0 && position.step < totalSteps) {
      // the health window covers training steps only: it closes before the evaluation passes
      const health = o.health?.collect(position.step);
      if (health) reportHealth(health, position.tokens, o.writeMetrics, (line) => o.progress.log(line));
      const r = await o.evaluate(config.train.evalBatches);
      o.writeMetrics({ kind: 'eval', step: position.step, tokens: position.tokens, val_loss: r.loss, val_ppl: r.perplexity, val_bpb: r.bitsPerByte });
      o.progress.log(`eval step ${position.step} | val_loss ${r.loss.toFixed(4)} | ppl ${r.perplexity.toFixed(2)} | bpb ${r.bitsPerByte.toFixed(4)}`);
      o.health?.start(position.step);
    }
    const stop = o.stopRequested();
    if (position.step === totalSteps || stop || (checkpointEvery > 0 && position.step % checkpointEvery === 0)) {
      if (position.step !== lastCheckpoint || position.step === totalSteps) {
        tickWall();
        await o.checkpoint({ ...position });
        lastCheckpoint = position.step;
      }
    }
    if (stop) return { kind: 'interrupted', position: { ...position } };
    // Let SIGINT / SIGTERM handlers and the progress bar's timer run.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  tickWall();
  return { kind: 'completed', position: { ...position } };
}

// What the two MoE layers (token choice, expert choice) share around their forward passes: the
// [B, S, D] <-> [T, D] apply on either engine, the parameters, usage accounting, cost counts, state
// entries and lifetime.
//
// Axes: B batch, S sequence, T = B*S tokens, D model width, E experts, H expert hidden width.
import * as tf from '@tensorflow/tfjs-core';
import { makeReadable, onDevice } from '@peer/backend';
import type { NamedArray, UsageOptions, UsageStatsReport } from '@peer/expert-store';
import type { ApplyMode, FeedForwardOutput, StateEntryGetter } from '@peer/feed-forward';
import { expertSlotFlops } from './moe-expert-mixture.js';
import { MoeParameters, type MoeShape } from './moe-parameters.js';
import { checkInput3D, type MoeRoutingStats } from './moe-stats.js';
import type { MoeDeviceResult, MoeTensors } from './moe-token-choice.js';
import { UsageAccumulator } from './usage-report.js';

/** `HostResult`: what the layer's host forward gives (its routing, read on the host, for `record`). */
export abstract class MoeLayerBase<Config extends MoeShape, HostResult extends MoeDeviceResult> {
  abstract readonly kind: string;
  readonly dim: number;
  readonly config: Readonly<Config>;
  protected readonly params: MoeParameters;
  protected readonly usage: UsageAccumulator;
  protected last: MoeRoutingStats | undefined;
  private disposed = false;

  protected constructor(config: Config) {
    this.config = Object.freeze(config);
    this.dim = config.dim;
    this.params = new MoeParameters(config);
    this.usage = new UsageAccumulator(config.experts);
  }

  /** How many experts a token goes through on average (top-K, or the capacity factor). */
  protected abstract expertsPerToken(): number;

  /** The layer's forward on a host engine, x [T, D] (inside the caller's tidy). */
  protected abstract hostForward(x: tf.Tensor2D, training: boolean): HostResult;

  /** The layer's forward on a device engine (no synchronous read), x [T, D] (inside the caller's tidy). */
  protected abstract deviceForward(x: tf.Tensor2D, training: boolean): MoeDeviceResult;

  /** Keeps the routing statistics (and usage) of a host forward pass. */
  protected abstract record(result: HostResult): void;

  apply(x: tf.Tensor3D, mode: ApplyMode): FeedForwardOutput {
    const [B, S] = checkInput3D(this.kind, x, this.dim);
    const device = onDevice();
    if (device) this.refuseHostStatsOnDevice();
    return tf.tidy(() => {
      const tokens = tf.reshape(x, [B * S, this.dim]) as tf.Tensor2D;
      let result: MoeDeviceResult;
      if (device) {
        result = this.deviceForward(tokens, mode.training);
      } else {
        const hostResult = this.hostForward(tokens, mode.training);
        this.record(hostResult);
        result = hostResult;
      }
      const y = tf.reshape(result.y, [B, S, this.dim]) as tf.Tensor3D;
      return result.auxLoss ? { y, auxLoss: result.auxLoss } : { y };
    });
  }

  /** The variables as plain tensors, for the layer's forward function. */
  tensors(): MoeTensors {
    this.checkAlive();
    return { router: this.params.router as tf.Variable<tf.Rank.R2>, experts: this.params.experts() };
  }

  /** Routing of the last forward pass: per-expert load, capacity, dropped assignments and tokens (undefined after a pass on a device engine). */
  lastRoutingStats(): MoeRoutingStats | undefined {
    return this.last;
  }

  trainableVariables(): tf.Variable[] {
    this.checkAlive();
    return this.params.variables();
  }

  sparseStep(_lrScale: number): void {}

  zeroSparseGrads(): void {}

  /** Router 2 D E + expertsPerToken experts of 2 * 2 D H each (matMul multiply-adds x 2; capacity padding not counted). */
  flopsPerToken(): number {
    const { dim: D, experts: E, hidden: H } = this.config;
    return 2 * D * E + this.expertsPerToken() * expertSlotFlops(D, H);
  }

  /** Router + expertsPerToken experts. */
  activeParamsPerToken(): number {
    return this.params.routerParams() + this.expertsPerToken() * this.params.paramsPerExpert();
  }

  totalParams(): number {
    return this.params.totalParams();
  }

  /** Starts accumulating, per expert, the combine weights it received (and their count). */
  startUsage(options: UsageOptions = {}): void {
    this.usage.start(options);
  }

  stopUsage(): UsageStatsReport {
    return this.usage.stop();
  }

  /** Reads the variables once asynchronously so that `stateEntries` works on a device engine. */
  async prepareState(): Promise<void> {
    this.checkAlive();
    await makeReadable(this.params.variables());
  }

  stateEntries(prefix: string): NamedArray[] {
    this.checkAlive();
    return this.params.stateEntries(prefix);
  }

  loadStateEntries(prefix: string, get: StateEntryGetter): void {
    this.checkAlive();
    this.params.loadStateEntries(prefix, get);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.params.dispose();
  }

  /**
   * On a device engine the routing stays in tensors: `lastRoutingStats` is undefined there, and usage
   * statistics (which read the routing every pass) are refused.
   */
  private refuseHostStatsOnDevice(): void {
    this.last = undefined;
    if (this.usage.active) throw new Error(`${this.kind}: usage statistics read the routing synchronously and are not available on the webgpu engine; run usage on wasm or cpu (checkpoints are engine-neutral)`);
  }

  protected checkAlive(): void {
    if (this.disposed) throw new Error(`${this.kind}: used after dispose()`);
  }
}

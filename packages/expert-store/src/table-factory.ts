// One way to make expert tables and their optimizers on any engine: device tables (GPU buffers,
// device programs) where the active engine is a device engine (webgpu), host tables elsewhere. The
// layer and PKM build their tables here, so that they run on either without knowing which.
import { onDevice } from '@peer/backend';
import type { ExpertTable, RowGradient, TablePlacement } from './expert-table.js';
import { DeviceExpertTable, type DeviceExpertTableOptions } from './device-expert-table.js';
import { DeviceSparseAdam, DeviceSparseSgd } from './device-sparse-optimizer.js';
import { HostExpertTable } from './host-expert-table.js';
import type { NamedArray } from './named-array.js';
import { SparseAdam, type SparseAdamOptions } from './sparse-adam.js';
import type { SparseStepResult } from './sparse-optimizer.js';
import { SparseSgd, type SparseSgdOptions } from './sparse-sgd.js';

export interface CreateExpertTableOptions extends DeviceExpertTableOptions {
  /** Where the table lives (default: 'device' when the active engine is webgpu, else 'host'). */
  placement?: TablePlacement;
}

/** A HostExpertTable, or a DeviceExpertTable on a device engine (options that do not apply there are ignored). */
export function createExpertTable(options: CreateExpertTableOptions): ExpertTable {
  const placement = options.placement ?? (onDevice() ? 'device' : 'host');
  if (placement !== 'host' && placement !== 'device') throw new Error(`createExpertTable: placement must be 'host' or 'device', got ${JSON.stringify(placement)}`);
  return placement === 'device' ? new DeviceExpertTable(options) : new HostExpertTable(options);
}

/** What createSparseOptimizer makes: SparseAdam / SparseSgd's options with the kind. */
export type SparseOptimizerConfig = ({ kind: 'adam' } & SparseAdamOptions) | ({ kind: 'sgd' } & SparseSgdOptions);

/** The optimizer of expert tables on either placement (SparseAdam, SparseSgd, DeviceSparseAdam, DeviceSparseSgd). */
export interface SparseTableOptimizer {
  readonly placement: TablePlacement;
  /** Base learning rate (writable: a schedule may change it). */
  lr: number;
  readonly weightDecay: number;
  readonly clipNorm: number | undefined;
  track(...tables: ExpertTable[]): this;
  step(table: ExpertTable, grad: RowGradient, lrScale?: number): SparseStepResult;
  /** Makes `stateEntries` readable (a no-op on host; reads the device state once, asynchronously). */
  prepareState(): Promise<void>;
  stateEntries(prefix?: string): NamedArray[];
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
  dispose(): void;
}

/**
 * The sparse optimizer for `tables`: the device one when they are device tables, the host one for
 * host tables (without tables: by the active engine, as createExpertTable). Mixed placements throw.
 */
export function createSparseOptimizer(config: SparseOptimizerConfig, tables: readonly ExpertTable[] = []): SparseTableOptimizer {
  const placements = new Set(tables.map((t) => t.placement));
  if (placements.size > 1) throw new Error(`createSparseOptimizer: the tables live in different places (${tables.map((t) => `'${t.name}' ${t.placement}`).join(', ')}); one optimizer updates tables of one placement`);
  const placement = placements.size === 1 ? [...placements][0]! : onDevice() ? 'device' : 'host';
  const { kind, ...options } = config;
  if (kind === 'adam') return placement === 'device' ? new DeviceSparseAdam(options, tables) : new SparseAdam(options, tables);
  if (kind === 'sgd') return placement === 'device' ? new DeviceSparseSgd(options, tables) : new SparseSgd(options, tables);
  throw new Error(`createSparseOptimizer: kind must be 'adam' or 'sgd', got ${JSON.stringify(kind)}`);
}


// The run's metrics as TensorBoard scalars in <run>/tb/, written next to metrics.jsonl (same steps,
// same numbers): `tensorboard --logdir runs` shows every run. Tags:
//   train/loss, train/aux_loss, train/lr, train/grad_norm, perf/tokens_per_s, perf/mfu   (kind train)
//   val/loss, val/perplexity, val/bits_per_byte                                         (kind eval)
//   experts/block<i>/usage, .../unevenness, .../dead, .../head_overlap                   (kind health)
import { EventFileWriter } from '../tensorboard/event-file.js';
import type { ScalarValue } from '../tensorboard/event-proto.js';
import type { MetricsRecord } from './run-folder.js';

const TRAIN_TAGS: Record<string, string> = {
  loss: 'train/loss',
  aux_loss: 'train/aux_loss',
  lr: 'train/lr',
  grad_norm: 'train/grad_norm',
  tokens_per_s: 'perf/tokens_per_s',
  mfu: 'perf/mfu',
};
const EVAL_TAGS: Record<string, string> = { val_loss: 'val/loss', val_ppl: 'val/perplexity', val_bpb: 'val/bits_per_byte' };
const HEALTH_FIELDS = ['usage', 'unevenness', 'dead', 'head_overlap'] as const;

/** The scalars of one metrics record (fields that are null or not finite are left out). */
export function scalarsOf(record: MetricsRecord): ScalarValue[] {
  const out: ScalarValue[] = [];
  const add = (tag: string, v: unknown) => {
    if (typeof v === 'number' && Number.isFinite(v)) out.push({ tag, value: v });
  };
  if (record.kind === 'train') for (const [field, tag] of Object.entries(TRAIN_TAGS)) add(tag, record[field]);
  else if (record.kind === 'eval') for (const [field, tag] of Object.entries(EVAL_TAGS)) add(tag, record[field]);
  else if (record.kind === 'health') for (const field of HEALTH_FIELDS) add(`experts/block${record.block}/${field}`, record[field]);
  return out;
}

/** Appends the scalars of metrics records to a new events file of a run's tb/ folder. */
export class TensorBoardLog {
  private readonly writer: EventFileWriter;

  /** Opens a new events file in `dir` (a resumed run first drops its redone steps with `truncateEvents`). */
  constructor(dir: string) {
    this.writer = new EventFileWriter(dir);
  }

  get path(): string {
    return this.writer.path;
  }

  write(record: MetricsRecord): void {
    this.writer.scalars(record.step, scalarsOf(record));
  }

  close(): void {
    this.writer.close();
  }
}

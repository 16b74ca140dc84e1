// TensorBoard event files: a folder of `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>` files,
// each a TFRecord stream of `Event`s starting with the file-version event. TensorBoard reads every
// events file in a folder in name order, so a resumed run writes a new file beside the old ones.
//
// Writes are append-only and one write call per record, so a killed writer leaves at most a torn
// last record; readers skip it and `truncateEvents` removes it with the steps a resumed run redoes.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { decodeEvent, encodeEvent, ProtoDecodeError, type EventRecord, type ScalarValue } from './event-proto.js';
import { frameRecord, readRecords, RECORD_OVERHEAD, RecordFormatError } from './record-io.js';

export const FILE_VERSION = 'brain.Event:2';
const EVENTS_MARK = 'tfevents';

let filesOpened = 0;

const nowSeconds = () => Date.now() / 1000;

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Appends scalar events to a new events file in `dir`. */
export class EventFileWriter {
  readonly path: string;
  private fd: number | undefined;

  /** Creates `dir` if needed and a new events file in it (never an existing one). */
  constructor(dir: string, options: { wallTime?: number } = {}) {
    mkdirSync(dir, { recursive: true });
    const wallTime = options.wallTime ?? nowSeconds();
    // host names may hold path separators on odd systems
    const host = hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
    const seconds = String(Math.floor(wallTime)).padStart(10, '0');
    this.path = join(dir, `events.out.${EVENTS_MARK}.${seconds}.${host}.${process.pid}.${filesOpened++}`);
    this.fd = openSync(this.path, 'wx');
    this.writeEvent({ wallTime, step: 0, fileVersion: FILE_VERSION });
  }

  private writeEvent(event: EventRecord): void {
    if (this.fd === undefined) throw new Error(`EventFileWriter: ${this.path} is closed`);
    writeAll(this.fd, frameRecord(encodeEvent(event)));
  }

  /** One event holding `scalars` at `step`. */
  scalars(step: number, scalars: ScalarValue[], wallTime = nowSeconds()): void {
    if (scalars.length === 0) return;
    for (const s of scalars) {
      if (typeof s.value !== 'number') throw new Error(`EventFileWriter: scalar '${s.tag}' at step ${step} is ${String(s.value)}, not a number`);
    }
    this.writeEvent({ wallTime, step, scalars });
  }

  /** Flushes to disk and closes the file; later writes throw. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** The events files of `dir` in the order TensorBoard reads them (by name); [] when `dir` does not exist. */
export function eventFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.includes(EVENTS_MARK) && !n.endsWith('.tmp'))
    .sort()
    .map((n) => join(dir, n));
}

export interface EventFileContents {
  events: EventRecord[];
  /** Byte offset of a torn last record, if any (skipped). */
  tornAt?: number;
}

/** The events of one file; throws naming the file and byte offset of a corrupt record. */
export function readEventFile(path: string): EventFileContents {
  const bytes = readFileSync(path);
  const { records, tornAt } = readRecords(bytes, path);
  const events = records.map((r) => {
    try {
      return decodeEvent(r.data);
    } catch (err) {
      if (err instanceof ProtoDecodeError) throw new RecordFormatError(path, r.offset, `not an Event: ${err.message}`);
      throw err;
    }
  });
  return tornAt === undefined ? { events } : { events, tornAt };
}

/** Every scalar of the event files in `dir`, in file order, as { tag: [[step, value], ...] }. */
export function readScalars(dir: string): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  for (const file of eventFiles(dir)) {
    for (const e of readEventFile(file).events) {
      for (const s of e.scalars ?? []) {
        let series = out.get(s.tag);
        if (!series) out.set(s.tag, (series = []));
        series.push([e.step, s.value]);
      }
    }
  }
  return out;
}

/**
 * Drops the summaries of steps after `step` (and torn records) from the events files of `dir`, so
 * that a run resumed from its checkpoint at `step` reads as if it had never stopped. Each changed
 * file is rewritten atomically (temporary file, then rename); a file left with no summary is removed,
 * and so is a temporary file an interrupted rewrite left behind.
 */
export function truncateEvents(dir: string, step: number): void {
  if (!existsSync(dir)) return;
  // a rewrite interrupted before its rename; TensorBoard would read it as another events file
  for (const n of readdirSync(dir)) if (n.includes(EVENTS_MARK) && n.endsWith('.tmp')) rmSync(join(dir, n));
  for (const path of eventFiles(dir)) {
    const bytes = readFileSync(path);
    const { records, tornAt } = readRecords(bytes, path);
    const decoded = records.map((r) => ({ ...r, event: decodeEvent(r.data) }));
    const kept = decoded.filter((r) => r.event.scalars === undefined || r.event.step <= step);
    if (kept.length === records.length && tornAt === undefined) continue;
    if (!kept.some((r) => r.event.scalars !== undefined)) {
      rmSync(path);
      continue;
    }
    const out = new Uint8Array(kept.reduce((n, r) => n + RECORD_OVERHEAD + r.data.length, 0));
    let at = 0;
    for (const r of kept) {
      const framed = bytes.subarray(r.offset, r.offset + RECORD_OVERHEAD + r.data.length);
      out.set(framed, at);
      at += framed.length;
    }
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, out);
    renameSync(tmp, path);
  }
}

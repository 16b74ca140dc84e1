import { appendFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { eventFiles, EventFileWriter, FILE_VERSION, readEventFile, readScalars, truncateEvents } from './event-file.js';
import { decodeEvent, encodeEvent, type EventRecord } from './event-proto.js';
import { frameRecord, readRecords, RecordFormatError } from './record-io.js';

// Written by fixtures/write_fixture.py with Google's protobuf runtime and google-crc32c.
const FIXTURE_DIR = join(import.meta.dirname, 'fixtures');
interface FixtureEvent {
  wallTime: number;
  step: number;
  hex: string;
  fileVersion?: string;
  scalars?: { tag: string; value: number; given: number }[];
}
const fixture = JSON.parse(readFileSync(join(FIXTURE_DIR, 'fixture-events.json'), 'utf8')) as { events: FixtureEvent[] };
const fixtureBytes = readFileSync(join(FIXTURE_DIR, 'events.out.tfevents.fixture'));

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const tempDir = () => mkdtempSync(join(tmpdir(), 'peer-tb-'));
const recordOf = (e: FixtureEvent): EventRecord =>
  e.fileVersion !== undefined
    ? { wallTime: e.wallTime, step: e.step, fileVersion: e.fileVersion }
    : { wallTime: e.wallTime, step: e.step, scalars: e.scalars!.map((s) => ({ tag: s.tag, value: s.given })) };

describe('Event encoding against the reference protobuf serializer', () => {
  it('encodes every fixture event to the same bytes', () => {
    for (const e of fixture.events) expect(hex(encodeEvent(recordOf(e))), `step ${e.step}`).toBe(e.hex);
  });

  it('frames records byte-identically to the fixture file', () => {
    const ours = Buffer.concat(fixture.events.map((e) => frameRecord(encodeEvent(recordOf(e)))));
    expect(ours.equals(fixtureBytes)).toBe(true);
  });

  it('reads the fixture file back (values as float32)', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'events.out.tfevents.fixture'), fixtureBytes);
    const { events, tornAt } = readEventFile(join(dir, 'events.out.tfevents.fixture'));
    expect(tornAt).toBeUndefined();
    expect(events).toHaveLength(fixture.events.length);
    events.forEach((got, i) => {
      const want = fixture.events[i]!;
      expect(got.wallTime).toBe(want.wallTime);
      expect(got.step).toBe(want.step);
      expect(got.fileVersion).toBe(want.fileVersion);
      expect(got.scalars).toEqual(want.scalars?.map((s) => ({ tag: s.tag, value: s.value })));
    });
  });

  it('round-trips random events (float32 values, large steps, unicode tags)', () => {
    const r = testRng();
    const tagChars = 'abc/_-.09\u00e9\u4e2d\u{1f600}';
    for (let t = 0; t < 200; t++) {
      const scalars = Array.from({ length: 1 + r.int(5) }, () => ({
        tag: Array.from({ length: r.int(12) }, () => [...tagChars][r.int([...tagChars].length)]).join(''),
        value: Math.fround(r.normal() * 10 ** r.int(12)),
      }));
      const event: EventRecord = { wallTime: 1.7e9 + r.float() * 1e6, step: r.int(2) ? r.int(1e6) : r.int(Number.MAX_SAFE_INTEGER), scalars };
      expect(decodeEvent(encodeEvent(event))).toEqual(event);
    }
  });
});

// Written by fixtures/write_tensorboardx_fixture.py with tensorboardX's SummaryWriter.
const tbx = JSON.parse(readFileSync(join(FIXTURE_DIR, 'tensorboardx-events.json'), 'utf8')) as {
  scalars: { tag: string; value: number; given: number; step: number; wallTime: number }[];
};
const tbxBytes = readFileSync(join(FIXTURE_DIR, 'events.out.tfevents.tensorboardx'));

describe("tensorboardX's event files", () => {
  it('reads every scalar tensorboardX wrote, and re-encodes its file byte for byte', () => {
    const { events, tornAt } = readEventFile(join(FIXTURE_DIR, 'events.out.tfevents.tensorboardx'));
    expect(tornAt).toBeUndefined();
    expect(events[0]).toMatchObject({ step: 0, fileVersion: FILE_VERSION });
    expect(events.slice(1)).toEqual(tbx.scalars.map((s) => ({ wallTime: s.wallTime, step: s.step, scalars: [{ tag: s.tag, value: s.value }] })));
    // the writer's own encoding of the same events (the file-version event's wall time as read)
    const ours = Buffer.concat([
      frameRecord(encodeEvent({ wallTime: events[0]!.wallTime, step: 0, fileVersion: FILE_VERSION })),
      ...tbx.scalars.map((s) => frameRecord(encodeEvent({ wallTime: s.wallTime, step: s.step, scalars: [{ tag: s.tag, value: s.given }] }))),
    ]);
    expect(ours.equals(tbxBytes)).toBe(true);
  });
});

describe('TFRecord reading', () => {
  it('reports a torn last record and names the file and offset of a corrupt one', () => {
    const recs = readRecords(fixtureBytes, 'f');
    const second = recs.records[1]!.offset;
    expect(readRecords(fixtureBytes.subarray(0, second + 5), 'f')).toMatchObject({ tornAt: second, records: [{ offset: 0 }] });
    expect(readRecords(fixtureBytes.subarray(0, fixtureBytes.length - 1), 'f').tornAt).toBe(recs.records.at(-1)!.offset);
    const badData = Buffer.from(fixtureBytes);
    badData[second + 20]! ^= 1;
    expect(() => readRecords(badData, 'x.tfevents')).toThrow(new RecordFormatError('x.tfevents', second, 'the data checksum of a 49-byte record does not match (corrupt)'));
    const badLength = Buffer.from(fixtureBytes);
    badLength[second]! ^= 1;
    expect(() => readRecords(badLength, 'x.tfevents')).toThrow(/^x\.tfevents: the length checksum does not match .*\(record at byte 40\)$/);
    expect(second).toBe(40);
  });
});

describe('EventFileWriter', () => {
  it('writes a file TensorBoard recognises: file-version event first, one event per step', () => {
    const dir = tempDir();
    const w = new EventFileWriter(join(dir, 'tb'), { wallTime: 1765000000.5 });
    w.scalars(1, [{ tag: 'train/loss', value: 5.25 }, { tag: 'train/lr', value: 1e-3 }], 1765000001);
    w.scalars(2, [{ tag: 'train/loss', value: 4.5 }], 1765000002);
    w.scalars(3, []);
    w.close();
    expect(() => w.scalars(4, [{ tag: 'a', value: 1 }])).toThrow(/is closed/);
    const files = eventFiles(join(dir, 'tb'));
    expect(files).toEqual([w.path]);
    expect(w.path).toMatch(new RegExp(`/events\\.out\\.tfevents\\.1765000000\\.[^/]+\\.${process.pid}\\.\\d+$`));
    const { events } = readEventFile(w.path);
    expect(events).toEqual([
      { wallTime: 1765000000.5, step: 0, fileVersion: FILE_VERSION },
      { wallTime: 1765000001, step: 1, scalars: [{ tag: 'train/loss', value: 5.25 }, { tag: 'train/lr', value: Math.fround(1e-3) }] },
      { wallTime: 1765000002, step: 2, scalars: [{ tag: 'train/loss', value: 4.5 }] },
    ]);
  });

  it('a resumed run writes a new file; truncation drops the redone steps and torn records, so the folder reads as one run', () => {
    const dir = tempDir();
    const a = new EventFileWriter(dir);
    for (let s = 1; s <= 6; s++) a.scalars(s, [{ tag: 'loss', value: s }]);
    a.close();
    // a process killed mid-write leaves half a record
    appendFileSync(a.path, frameRecord(encodeEvent({ wallTime: 1, step: 7, scalars: [{ tag: 'loss', value: 7 }] })).subarray(0, 10));
    expect(readEventFile(a.path).tornAt).toBeGreaterThan(0);
    writeFileSync(`${a.path}.tmp`, 'left by a killed rewrite');
    truncateEvents(dir, 4);
    expect(readdirSync(dir)).toEqual([basename(a.path)]);
    expect(readEventFile(a.path).tornAt).toBeUndefined();
    const b = new EventFileWriter(dir);
    for (let s = 5; s <= 8; s++) b.scalars(s, [{ tag: 'loss', value: 10 * s }]);
    b.close();
    expect(eventFiles(dir)).toEqual([a.path, b.path].sort());
    expect(readScalars(dir).get('loss')).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 50], [6, 60], [7, 70], [8, 80]]);
    // a file with nothing left is removed; no temporary file stays behind
    truncateEvents(dir, 0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a non-number value', () => {
    const w = new EventFileWriter(tempDir());
    expect(() => w.scalars(1, [{ tag: 'x', value: null as unknown as number }])).toThrow("EventFileWriter: scalar 'x' at step 1 is null, not a number");
    w.close();
  });
});

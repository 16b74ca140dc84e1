// The few fields of TensorFlow's `Event` protobuf (tensorflow/core/util/event.proto, proto3) that
// scalar logs need, encoded and decoded by hand:
//   Event   { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3; Summary summary = 5; } }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; oneof value { float simple_value = 2; } }
// Encoding follows the reference serializer byte for byte: fields in number order, proto3 scalars
// left out when they hold their default (0, ""), oneof members always written.

/** One scalar of a summary. */
export interface ScalarValue {
  tag: string;
  /** Stored as float32, as TensorBoard's `simple_value` is. */
  value: number;
}

export interface EventRecord {
  /** Seconds since the Unix epoch. */
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars?: ScalarValue[];
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Growable byte buffer with the protobuf primitives. */
class ProtoWriter {
  private bytes = new Uint8Array(64);
  private view = new DataView(this.bytes.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const next = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
    this.view = new DataView(next.buffer);
  }

  key(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  /** Unsigned LEB128 of a non-negative value; negative int64 values are written as their 64-bit two's complement. */
  varint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    this.reserve(10);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      this.bytes[this.length++] = byte;
    } while (v > 0n);
  }

  double(value: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, value, true);
    this.length += 8;
  }

  float(value: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, value, true);
    this.length += 4;
  }

  raw(data: Uint8Array): void {
    this.varint(BigInt(data.length));
    this.reserve(data.length);
    this.bytes.set(data, this.length);
    this.length += data.length;
  }

  finish(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

/** proto3 leaves out a double equal to +0 (-0 has a non-zero bit pattern and is written). */
const isDefaultDouble = (x: number) => x === 0 && !Object.is(x, -0);

function encodeValue(v: ScalarValue): Uint8Array {
  const w = new ProtoWriter();
  if (v.tag !== '') {
    w.key(1, WIRE_LENGTH);
    w.raw(utf8.encode(v.tag));
  }
  w.key(2, WIRE_FIXED32);
  w.float(v.value);
  return w.finish();
}

/** The serialized `Event` message. */
export function encodeEvent(e: EventRecord): Uint8Array {
  if (!Number.isSafeInteger(e.step)) throw new Error(`encodeEvent: step must be a safe integer, got ${e.step}`);
  if (e.fileVersion !== undefined && e.scalars !== undefined) throw new Error('encodeEvent: an Event holds a file_version or a summary, not both');
  const w = new ProtoWriter();
  if (!isDefaultDouble(e.wallTime)) {
    w.key(1, WIRE_FIXED64);
    w.double(e.wallTime);
  }
  if (e.step !== 0) {
    w.key(2, WIRE_VARINT);
    w.varint(BigInt(e.step));
  }
  if (e.fileVersion !== undefined) {
    w.key(3, WIRE_LENGTH);
    w.raw(utf8.encode(e.fileVersion));
  }
  if (e.scalars !== undefined) {
    const summary = new ProtoWriter();
    for (const v of e.scalars) {
      summary.key(1, WIRE_LENGTH);
      summary.raw(encodeValue(v));
    }
    w.key(5, WIRE_LENGTH);
    w.raw(summary.finish());
  }
  return w.finish();
}

/** Thrown on bytes that are not a well-formed message; `offset` is within the message. */
export class ProtoDecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at byte ${offset} of the message`);
    this.name = 'ProtoDecodeError';
  }
}

interface Field {
  field: number;
  wire: number;
  /** varint value, fixed bits, or undefined for length-delimited. */
  int?: bigint;
  /** Byte range of a fixed32 / fixed64 / length-delimited payload. */
  start: number;
  end: number;
}

function* fields(bytes: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) throw new ProtoDecodeError('truncated varint', pos);
      const b = bytes[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new ProtoDecodeError('varint longer than 10 bytes', pos);
  };
  while (pos < bytes.length) {
    const at = pos;
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new ProtoDecodeError('field number 0', at);
    let size: number;
    if (wire === WIRE_VARINT) {
      const int = varint();
      yield { field, wire, int, start: pos, end: pos };
      continue;
    } else if (wire === WIRE_FIXED64) size = 8;
    else if (wire === WIRE_FIXED32) size = 4;
    else if (wire === WIRE_LENGTH) {
      const len = varint();
      if (len > BigInt(bytes.length - pos)) throw new ProtoDecodeError(`field ${field}: length ${len} runs past the end`, at);
      size = Number(len);
    } else throw new ProtoDecodeError(`field ${field}: unsupported wire type ${wire}`, at);
    if (pos + size > bytes.length) throw new ProtoDecodeError(`field ${field}: truncated`, at);
    yield { field, wire, start: pos, end: pos + size };
    pos += size;
  }
}

function expectWire(f: Field, wire: number, what: string): void {
  if (f.wire !== wire) throw new ProtoDecodeError(`${what} (field ${f.field}) has wire type ${f.wire}, expected ${wire}`, f.start);
}

function decodeString(bytes: Uint8Array, f: Field, what: string): string {
  try {
    return utf8Strict.decode(bytes.subarray(f.start, f.end));
  } catch {
    throw new ProtoDecodeError(`${what} is not valid UTF-8`, f.start);
  }
}

function decodeValue(bytes: Uint8Array): ScalarValue | undefined {
  let tag = '';
  let value: number | undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const f of fields(bytes)) {
    if (f.field === 1) {
      expectWire(f, WIRE_LENGTH, 'Value.tag');
      tag = decodeString(bytes, f, 'Value.tag');
    } else if (f.field === 2) {
      expectWire(f, WIRE_FIXED32, 'Value.simple_value');
      value = view.getFloat32(f.start, true);
    }
  }
  // values of other kinds (images, histograms, tensors) are not scalars
  return value === undefined ? undefined : { tag, value };
}

/** Decodes an `Event`; fields other than the scalar ones are skipped. */
export function decodeEvent(bytes: Uint8Array): EventRecord {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const event: EventRecord = { wallTime: 0, step: 0 };
  for (const f of fields(bytes)) {
    if (f.field === 1) {
      expectWire(f, WIRE_FIXED64, 'Event.wall_time');
      event.wallTime = view.getFloat64(f.start, true);
    } else if (f.field === 2) {
      expectWire(f, WIRE_VARINT, 'Event.step');
      const step = BigInt.asIntN(64, f.int!);
      if (step > BigInt(Number.MAX_SAFE_INTEGER) || step < BigInt(Number.MIN_SAFE_INTEGER)) throw new ProtoDecodeError(`Event.step ${step} is not a safe integer`, f.start);
      event.step = Number(step);
    } else if (f.field === 3) {
      expectWire(f, WIRE_LENGTH, 'Event.file_version');
      event.fileVersion = decodeString(bytes, f, 'Event.file_version');
    } else if (f.field === 5) {
      expectWire(f, WIRE_LENGTH, 'Event.summary');
      const summary = bytes.subarray(f.start, f.end);
      const scalars = event.scalars ?? [];
      for (const v of fields(summary)) {
        if (v.field !== 1) continue;
        expectWire(v, WIRE_LENGTH, 'Summary.value');
        const value = decodeValue(summary.subarray(v.start, v.end));
        if (value) scalars.push(value);
      }
      event.scalars = scalars;
    }
  }
  return event;
}

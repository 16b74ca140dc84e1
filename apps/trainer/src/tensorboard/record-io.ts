// TFRecord framing, the container of TensorBoard event files. Each record is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
import { maskedCrc32c } from './crc32c.js';

/** Bytes a record adds around its data. */
export const RECORD_OVERHEAD = 16;

/** One framed record, ready to be written with a single write call. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_OVERHEAD + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A file that is not a sequence of intact records; `offset` is where the bad record starts. */
export class RecordFormatError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    what: string,
  ) {
    super(`${file}: ${what} (record at byte ${offset})`);
    this.name = 'RecordFormatError';
  }
}

export interface RecordSpan {
  /** Byte offset of the record's header in the file. */
  offset: number;
  data: Uint8Array;
}

export interface ReadRecordsResult {
  records: RecordSpan[];
  /**
   * Byte offset of an incomplete last record (a writer still writing, or one killed mid-write), or
   * undefined when the file ends on a record boundary. Complete records with bad checksums throw.
   */
  tornAt?: number;
}

/** Splits `bytes` (the whole file `file`, named in errors) into records, checking both CRCs of each. */
export function readRecords(bytes: Uint8Array, file: string): ReadRecordsResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: RecordSpan[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes.length - pos < 12) return { records, tornAt: pos };
    const header = bytes.subarray(pos, pos + 8);
    const lengthCrc = view.getUint32(pos + 8, true);
    if (maskedCrc32c(header) !== lengthCrc) throw new RecordFormatError(file, pos, 'the length checksum does not match (not a TFRecord file, or corrupt)');
    const length = view.getBigUint64(pos, true);
    if (length > BigInt(bytes.length - pos - 12)) {
      return { records, tornAt: pos };
    }
    const n = Number(length);
    if (bytes.length - pos < RECORD_OVERHEAD + n) return { records, tornAt: pos };
    const data = bytes.subarray(pos + 12, pos + 12 + n);
    if (maskedCrc32c(data) !== view.getUint32(pos + 12 + n, true)) throw new RecordFormatError(file, pos, `the data checksum of a ${n}-byte record does not match (corrupt)`);
    records.push({ offset: pos, data });
    pos += RECORD_OVERHEAD + n;
  }
  return { records };
}

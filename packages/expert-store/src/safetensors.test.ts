import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { testRng } from '@peer/test-utils';
import {
  deserializeSafetensors,
  readSafetensors,
  SafetensorsReader,
  serializeSafetensors,
  writeSafetensors,
} from './safetensors.js';
import type { NamedArray } from './named-array.js';

const dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const f32Bytes = (xs: number[]) => Array.from(new Uint8Array(Float32Array.from(xs).buffer));
const ascii = (s: string) => Array.from(Buffer.from(s, 'utf8'));
const u64 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff, 0, 0, 0, 0];

describe('safetensors bytes', () => {
  // Byte layouts the reference implementation's own tests pin down (its serializer output).
  it('matches the reference layout for one F32 tensor (no padding needed)', () => {
    const out = serializeSafetensors([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: Float32Array.of(0, 1, 2, 3, 4, 5) }]);
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(64);
    expect(Array.from(out)).toEqual([...u64(64), ...ascii(header), ...f32Bytes([0, 1, 2, 3, 4, 5])]);
  });

  it('pads the header with spaces to a multiple of 8 bytes', () => {
    const out = serializeSafetensors([{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data: Float32Array.of(0, 1, 2, 3, 4, 5) }]);
    const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(65);
    expect(Array.from(out)).toEqual([...u64(72), ...ascii(header), ...Array(7).fill(32), ...f32Bytes([0, 1, 2, 3, 4, 5])]);
  });

  it('writes empty files and metadata like the reference', () => {
    expect(Array.from(serializeSafetensors([]))).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const withMeta = serializeSafetensors([], { framework: 'pt' });
    expect(Array.from(withMeta)).toEqual([...u64(40), ...ascii('{"__metadata__":{"framework":"pt"}}'), 32, 32, 32, 32, 32]);
  });

  it('orders data by dtype alignment then name, so every tensor is aligned to its element size', () => {
    const arrays: NamedArray[] = [
      { name: 'b', dtype: 'U8', shape: [3], data: Uint8Array.of(1, 2, 3) },
      { name: 'z', dtype: 'F16', shape: [1], data: Uint16Array.of(0x3c00) },
      { name: 'a', dtype: 'F32', shape: [1], data: Float32Array.of(7) },
      { name: 'c', dtype: 'I64', shape: [2], data: BigInt64Array.of(-1n, 5n) },
      { name: 'y', dtype: 'F32', shape: [2], data: Float32Array.of(8, 9) },
    ];
    const out = serializeSafetensors(arrays);
    const n = Number(new DataView(out.buffer).getBigUint64(0, true));
    const header = JSON.parse(Buffer.from(out.subarray(8, 8 + n)).toString('utf8'));
    expect(Object.keys(header)).toEqual(['c', 'a', 'y', 'z', 'b']);
    expect(header.c.data_offsets).toEqual([0, 16]);
    expect(header.a.data_offsets).toEqual([16, 20]);
    expect(header.y.data_offsets).toEqual([20, 28]);
    expect(header.z.data_offsets).toEqual([28, 30]);
    expect(header.b.data_offsets).toEqual([30, 33]);
    expect((8 + n) % 8).toBe(0);
    expect(out.length).toBe(8 + n + 33);
  });

  it('round-trips every dtype bit-exactly, independent of a plain DataView decoder', () => {
    const rng = testRng();
    const n = 37;
    const f32 = Float32Array.from(rng.normals(n));
    const arrays: NamedArray[] = [
      { name: 'f32', dtype: 'F32', shape: [n], data: f32 },
      { name: 'f64', dtype: 'F64', shape: [n, 1], data: Float64Array.from(rng.normals(n)) },
      { name: 'f16', dtype: 'F16', shape: [n], data: Uint16Array.from({ length: n }, () => rng.int(65536)) },
      { name: 'bf16', dtype: 'BF16', shape: [n], data: Uint16Array.from({ length: n }, () => rng.int(65536)) },
      { name: 'i32', dtype: 'I32', shape: [n], data: Int32Array.from({ length: n }, () => rng.int(2 ** 31) - 2 ** 30) },
      { name: 'i64', dtype: 'I64', shape: [n], data: BigInt64Array.from({ length: n }, () => BigInt(rng.int(2 ** 40)) - 2n ** 39n) },
      { name: 'u8', dtype: 'U8', shape: [n], data: Uint8Array.from({ length: n }, () => rng.int(256)) },
      { name: 'bool', dtype: 'BOOL', shape: [n], data: Uint8Array.from({ length: n }, () => rng.int(2)) },
      { name: 'i8', dtype: 'I8', shape: [n], data: Int8Array.from({ length: n }, () => rng.int(256) - 128) },
      { name: 'i16', dtype: 'I16', shape: [n], data: Int16Array.from({ length: n }, () => rng.int(65536) - 32768) },
      { name: 'u16', dtype: 'U16', shape: [n], data: Uint16Array.from({ length: n }, () => rng.int(65536)) },
      { name: 'u32', dtype: 'U32', shape: [n], data: Uint32Array.from({ length: n }, () => rng.int(2 ** 32)) },
      { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.of(3.5) },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    ];
    const path = join(dir, 'all.safetensors');
    const result = writeSafetensors(path, arrays, { note: 'x', step: '12' });
    const file = readFileSync(path);
    expect(result.bytes).toBe(file.length);
    expect(result.sha256).toBe(createHash('sha256').update(file).digest('hex'));
    // Independent decode: DataView reads of the raw bytes at the header's offsets.
    const hn = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + hn).toString('utf8'));
    expect(header.__metadata__).toEqual({ note: 'x', step: '12' });
    const view = new DataView(file.buffer, file.byteOffset, file.length);
    const [b0] = header.f32.data_offsets as [number, number];
    for (let i = 0; i < n; i++) expect(view.getFloat32(8 + hn + b0 + 4 * i, true)).toBe(f32[i]);
    // And our reader gives back every array bit-exactly.
    const back = readSafetensors(path);
    expect(back.metadata).toEqual({ note: 'x', step: '12' });
    for (const a of arrays) {
      const b = back.get(a.name)!;
      expect(b.dtype).toBe(a.dtype);
      expect(b.shape).toEqual(a.shape);
      expect(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))).toBe(true);
    }
    const mem = deserializeSafetensors(serializeSafetensors(arrays));
    expect(mem.arrays.map((a) => a.name).sort()).toEqual(arrays.map((a) => a.name).sort());
  });

  it('streams tensors larger than one I/O chunk and reads slices of them', () => {
    const n = 17 * 1024 * 1024; // 68 MiB: more than one 64 MiB write/read call
    const big = new Float32Array(n);
    for (let i = 0; i < n; i += 4099) big[i] = i;
    const path = join(dir, 'big.safetensors');
    writeSafetensors(path, [{ name: 'big', dtype: 'F32', shape: [n / 256, 256], data: big }], undefined, { fsync: false });
    const reader = new SafetensorsReader(path);
    try {
      const back = reader.read('big').data as Float32Array;
      for (let i = 0; i < n; i += 4099) expect(back[i]).toBe(big[i]);
      expect(back[n - 1]).toBe(big[n - 1]);
      const rows = new Float32Array(3 * 256);
      reader.readInto('big', rows, 1000 * 256);
      expect(Array.from(rows)).toEqual(Array.from(big.subarray(1000 * 256, 1003 * 256)));
      expect(() => reader.readInto('big', new Float32Array(512), n - 256)).toThrow(/outside the tensor/);
      expect(() => reader.readInto('big', new Int32Array(4))).toThrow(/must be a Float32Array/);
      expect(() => reader.read('nope')).toThrow(/has no tensor named 'nope'/);
    } finally {
      reader.close();
    }
  });
});

describe('safetensors validation', () => {
  const good = serializeSafetensors([
    { name: 'a', dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
    { name: 'b', dtype: 'I32', shape: [3], data: Int32Array.of(5, 6, 7) },
  ]);
  const headerLen = Number(new DataView(good.buffer).getBigUint64(0, true));
  const withHeader = (json: string): Uint8Array => {
    const text = Buffer.from(json, 'utf8');
    const out = new Uint8Array(8 + text.length + 28);
    new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
    out.set(text, 8);
    return out;
  };

  it('refuses a truncated file, trailing bytes, and a header length past the end', () => {
    expect(() => deserializeSafetensors(good.subarray(0, good.length - 1), 'x.safetensors')).toThrow(/x\.safetensors: is \d+ bytes but its header describes \d+ \(truncated file\)/);
    const longer = new Uint8Array(good.length + 4);
    longer.set(good);
    expect(() => deserializeSafetensors(longer, 'x.safetensors')).toThrow(/trailing bytes/);
    expect(() => deserializeSafetensors(good.subarray(0, 20), 'x.safetensors')).toThrow(/header length \d+ runs past the end/);
    expect(() => deserializeSafetensors(good.subarray(0, 5), 'x.safetensors')).toThrow(/too short/);
    expect(headerLen % 8).toBe(0);
  });

  it('refuses broken headers with the tensor and the problem named', () => {
    expect(() => deserializeSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}'))).toThrow(/not valid JSON/);
    expect(() => deserializeSafetensors(withHeader('{"a":{"dtype":"F33","shape":[7],"data_offsets":[0,28]}}'))).toThrow(/tensor 'a': unsupported dtype "F33"/);
    expect(() => deserializeSafetensors(withHeader('{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,28]}}'))).toThrow(/tensor 'a': F32 \[6\] needs 24 bytes but data_offsets span 28/);
    expect(() => deserializeSafetensors(withHeader('{"a":{"dtype":"F32","shape":[6],"data_offsets":[4,28]}}'))).toThrow(/tensor 'a': data_offsets \[4, 28\] leave a gap/);
    expect(() => deserializeSafetensors(withHeader('{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[7],"data_offsets":[0,28]}}'))).toThrow(/metadata value 'k' must be a string/);
    expect(() => deserializeSafetensors(withHeader('{"a":{"dtype":"F32","shape":[7],"data_offsets":[0,28]}}'))).not.toThrow();
  });

  it('refuses bad input to the writer with one clear error', () => {
    expect(() => serializeSafetensors([{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }])).toThrow(/'a': shape \[3\] has 3 elements but data has 2/);
    expect(() => serializeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], data: new Float64Array(2) }])).toThrow(/'a': dtype F32 needs data in a Float32Array, got Float64Array/);
    const a: NamedArray = { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) };
    expect(() => serializeSafetensors([a, a])).toThrow(/'a' appears twice/);
    expect(() => serializeSafetensors([a], { k: 3 as unknown as string })).toThrow(/metadata value 'k' must be a string/);
  });

  it('names a missing file', () => {
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(/missing\.safetensors: file is missing/);
    writeFileSync(join(dir, 'tiny.safetensors'), Uint8Array.of(1, 2));
    expect(() => readSafetensors(join(dir, 'tiny.safetensors'))).toThrow(/tiny\.safetensors: is 2 bytes, too short/);
  });
});

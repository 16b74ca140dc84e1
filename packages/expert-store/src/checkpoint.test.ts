import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, loadCheckpoint, MANIFEST_FILE, planShards, saveCheckpoint, type Checkpoint } from './checkpoint.js';
import { checkpointArrays } from './checkpoint-fixture.test-util.js';
import { StoreFileError } from './file-io.js';
import { readSafetensors } from './safetensors.js';
import { HostExpertTable } from './host-expert-table.js';
import { float32ToBFloat16, float32ToFloat16, float16ToFloat32 } from './half-float.js';
import type { NamedArray } from './named-array.js';

const root = mkdtempSync(join(tmpdir(), 'checkpoint-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = () => join(root, `ckpt-${counter++}`);
const here = dirname(fileURLToPath(import.meta.url));

function bytes(a: NamedArray): Buffer {
  return Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength);
}

function expectSameArrays(ckpt: Checkpoint, arrays: NamedArray[]): void {
  expect([...ckpt.names].sort()).toEqual(arrays.map((a) => a.name).sort());
  for (const a of arrays) {
    const b = ckpt.get(a.name)!;
    expect(b.dtype).toBe(a.dtype);
    expect(b.shape).toEqual(a.shape);
    expect(bytes(b).equals(bytes(a))).toBe(true);
  }
}

function problemOf(fn: () => unknown): StoreFileError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StoreFileError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('saveCheckpoint / loadCheckpoint', () => {
  it('round-trips bit-exactly across shards, eager and lazy', () => {
    const dir = freshDir();
    const arrays = checkpointArrays(11);
    const manifest = saveCheckpoint(dir, arrays, { shardBytes: 64 * 1024, metadata: { step: '120' } });
    expect(manifest.shards.map((s) => s.file)).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]);
    expect(manifest.shards.map((s) => s.tensors)).toEqual([['layer.u'], ['layer.v'], ['layer.opt.m', 'layer.opt.steps', 'layer.half']]);
    expect(manifest.metadata).toEqual({ step: '120', total_size: 64 * 1024 * 2 + 32 * 1024 + 256 + 128 });
    expect(manifest.weight_map['layer.v']).toBe('model-00002-of-00003.safetensors');
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, ...manifest.shards.map((s) => s.file)].sort());
    // Each shard is a stand-alone safetensors file.
    expect(readSafetensors(join(dir, manifest.shards[2]!.file)).arrays.map((a) => a.name)).toEqual(['layer.opt.m', 'layer.opt.steps', 'layer.half']);

    expectSameArrays(loadCheckpoint(dir), arrays);
    const lazy = loadCheckpoint(dir, { lazy: true });
    try {
      expectSameArrays(lazy, arrays);
      const rows = new Float32Array(2 * 256);
      lazy.readInto('layer.u', rows, 10 * 256);
      expect(Array.from(rows)).toEqual(Array.from((arrays[0]!.data as Float32Array).subarray(10 * 256, 12 * 256)));
      expect(lazy.get('nope')).toBeUndefined();
    } finally {
      lazy.close();
    }
    // Leaves nothing beside the checkpoint.
    expect(readdirSync(root).filter((n) => n.startsWith(`${dir.split('/').pop()}.`))).toEqual([]);
  });

  it('replaces an existing checkpoint and refuses to replace a directory that is not one', () => {
    const dir = freshDir();
    saveCheckpoint(dir, checkpointArrays(1));
    const second = checkpointArrays(2);
    saveCheckpoint(dir, second, { shardBytes: 1 << 20 });
    expectSameArrays(loadCheckpoint(dir), second);
    const other = freshDir();
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    expect(() => saveCheckpoint(other, second)).toThrow(/non-empty directory without manifest\.json .*refusing to replace it/);
    expect(readFileSync(join(other, 'notes.txt'), 'utf8')).toBe('mine');
  });

  it('restores tables straight from a lazy checkpoint, converting dtypes chunk by chunk', () => {
    const dir = freshDir();
    const rows = 4200; // 4200 x 1024 = 4.3M elements: more than one 4M-element conversion chunk
    const source = new HostExpertTable({ rows, dim: 1024, seed: 3, name: 'u' });
    const half = new HostExpertTable({ rows, dim: 1024, seed: 4, name: 'h', storage: 'float16' });
    saveCheckpoint(dir, [...source.stateEntries('a.'), ...half.stateEntries('a.')]);
    const ckpt = loadCheckpoint(dir, { lazy: true, verify: false });
    try {
      const same = new HostExpertTable({ rows, dim: 1024, init: { kind: 'zeros' }, name: 'u' });
      same.restoreFrom('a.', ckpt);
      expect(bytes({ name: '', dtype: 'F32', shape: [], data: same.data }).equals(bytes({ name: '', dtype: 'F32', shape: [], data: source.data }))).toBe(true);
      const toBf16 = new HostExpertTable({ rows, dim: 1024, init: { kind: 'zeros' }, name: 'u', storage: 'bfloat16' });
      toBf16.restoreFrom('a.', ckpt);
      const u16 = (a: Uint16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      expect(u16(toBf16.halfData!).equals(u16(float32ToBFloat16(source.data)))).toBe(true);
      const widened = new HostExpertTable({ rows, dim: 1024, init: { kind: 'zeros' }, name: 'h' });
      widened.restoreFrom('a.', ckpt);
      expect(Array.from(widened.data.subarray(4_194_000, 4_194_400))).toEqual(Array.from(float16ToFloat32(half.halfData!.subarray(4_194_000, 4_194_400))));
      expect(u16(float32ToFloat16(widened.data)).equals(u16(half.halfData!))).toBe(true);
      const wrong = new HostExpertTable({ rows: 10, dim: 1024, name: 'u' });
      expect(() => wrong.restoreFrom('a.', ckpt)).toThrow(/state entry 'a.u' has shape \[4200,1024\], expected \[10,1024\]/);
      expect(() => wrong.restoreFrom('b.', ckpt)).toThrow(/state entry 'b.u' is missing/);
    } finally {
      ckpt.close();
    }
  });

  it('plans shards greedily and gives an oversized tensor a shard of its own', () => {
    const spec = (name: string, n: number) => ({ name, dtype: 'F32' as const, shape: [n] });
    expect(planShards([spec('a', 10), spec('b', 10), spec('c', 100), spec('d', 1)], 80).map((s) => s.map((x) => x.name))).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(planShards([], 80)).toEqual([[]]);
  });
});

describe('loadCheckpoint refuses damaged checkpoints, naming the file and the problem', () => {
  const make = () => {
    const dir = freshDir();
    const manifest = saveCheckpoint(dir, checkpointArrays(5), { shardBytes: 64 * 1024 });
    return { dir, manifest, shard: (i: number) => join(dir, manifest.shards[i]!.file) };
  };

  it('a flipped byte (checksum mismatch), in the data or in the header', () => {
    const { dir, shard } = make();
    const buf = readFileSync(shard(1));
    buf[buf.length - 100]! ^= 0x10;
    writeFileSync(shard(1), buf);
    const err = problemOf(() => loadCheckpoint(dir));
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.file).toBe(shard(1));
    expect(err.message).toMatch(/model-00002-of-00003\.safetensors: sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64} \(corrupt file\)/);
    // Lazy loading verifies too.
    expect(() => loadCheckpoint(dir, { lazy: true })).toThrow(/model-00002-of-00003\.safetensors: sha256/);
    // Without checksums, a flipped header byte is still caught by the header check.
    const { dir: dir2, shard: shard2 } = make();
    const b2 = readFileSync(shard2(0));
    b2[9] = 0x5b; // '{"' -> '{['
    writeFileSync(shard2(0), b2);
    expect(() => loadCheckpoint(dir2, { verify: false })).toThrow(/model-00001-of-00003\.safetensors: header is not valid JSON/);
  });

  it('a truncated shard', () => {
    const { dir, manifest, shard } = make();
    truncateSync(shard(2), manifest.shards[2]!.bytes - 7);
    const err = problemOf(() => loadCheckpoint(dir, { lazy: true, verify: false }));
    expect(err.file).toBe(shard(2));
    expect(err.message).toMatch(/model-00003-of-00003\.safetensors: shard is \d+ bytes but the manifest says \d+ \(truncated file\)/);
  });

  it('a missing shard', () => {
    const { dir, shard } = make();
    rmSync(shard(0));
    expect(() => loadCheckpoint(dir)).toThrow(/model-00001-of-00003\.safetensors: shard file is missing/);
  });

  it('a missing or corrupt manifest', () => {
    const { dir } = make();
    writeFileSync(join(dir, MANIFEST_FILE), '{"format": "peer-checkpoint", ');
    expect(() => loadCheckpoint(dir)).toThrow(/manifest\.json: manifest is not valid JSON/);
    rmSync(join(dir, MANIFEST_FILE));
    expect(() => loadCheckpoint(dir)).toThrow(/manifest\.json: manifest is missing/);
    expect(() => loadCheckpoint(join(root, 'never-saved'))).toThrow(/never-saved: checkpoint directory is missing/);
  });

  it('a wrong shape against the expected spec, and a missing expected entry', () => {
    const { dir, shard } = make();
    expect(() => loadCheckpoint(dir, { expect: [{ name: 'layer.v', shape: [64, 128] }] })).toThrow(
      /model-00002-of-00003\.safetensors: tensor 'layer\.v' is F32 \[64,256\] but \[64,128\] was expected \(wrong shape\)/,
    );
    expect(() => loadCheckpoint(dir, { expect: [{ name: 'layer.u', shape: [64, 256], dtype: 'F16' }] })).toThrow(/tensor 'layer\.u' is F32 \[64,256\] but F16 \[64,256\] was expected/);
    expect(() => loadCheckpoint(dir, { expect: [{ name: 'layer.w', shape: [1] }] })).toThrow(/expected tensor 'layer\.w' is not in the checkpoint/);
    expect(() => loadCheckpoint(dir, { expect: [{ name: 'layer.u', shape: [64, 256], dtype: 'F32' }] })).not.toThrow();
    expect(shard(0)).toContain('model-00001');
  });

  it('a shard whose header disagrees with the manifest', () => {
    const { dir, manifest } = make();
    const m = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8'));
    m.tensors['layer.u'].shape = [256, 64];
    writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m));
    expect(() => loadCheckpoint(dir)).toThrow(/model-00001-of-00003\.safetensors: tensor 'layer\.u' is F32 \[64,256\] in the shard but F32 \[256,64\] in the manifest/);
    expect(manifest.shards).toHaveLength(3);
  });
});

describe('atomic saves', () => {
  const childScript = join(here, 'save-and-die.test-util.ts');
  const saveAndDie = (dir: string, stage: string, seed: number) =>
    spawnSync(process.execPath, ['--import', 'tsx', childScript, dir, stage, String(seed)], { cwd: join(here, '..'), encoding: 'utf8', timeout: 60_000 });

  for (const stage of ['shard-written', 'manifest-written', 'old-moved'] as const) {
    it(`a save killed (SIGKILL) at '${stage}' leaves the previous checkpoint loadable`, () => {
      const dir = freshDir();
      const before = checkpointArrays(100);
      saveCheckpoint(dir, before, { shardBytes: 64 * 1024 });
      const child = saveAndDie(dir, stage, 200);
      expect(child.signal, child.stderr).toBe('SIGKILL');
      if (stage === 'old-moved') expect(existsSync(dir)).toBe(false);
      expectSameArrays(loadCheckpoint(dir), before);
      // The next save cleans up and succeeds; nothing is left beside the checkpoint.
      const after = checkpointArrays(300);
      saveCheckpoint(dir, after);
      expectSameArrays(loadCheckpoint(dir), after);
      const name = dir.split('/').pop()!;
      expect(readdirSync(root).filter((n) => n.startsWith(`${name}.`))).toEqual([]);
    });
  }

  it('a save that fails midway (an error thrown by a hook) leaves the previous checkpoint and no temp dir', () => {
    const dir = freshDir();
    const before = checkpointArrays(7);
    saveCheckpoint(dir, before);
    for (const stage of ['shard-written', 'manifest-written', 'old-moved']) {
      expect(() =>
        saveCheckpoint(dir, checkpointArrays(8), {
          shardBytes: 64 * 1024,
          onProgress: (p) => {
            if (p.stage === stage) throw new Error(`injected failure at ${stage}`);
          },
        }),
      ).toThrow(`injected failure at ${stage}`);
      expectSameArrays(loadCheckpoint(dir), before);
      const name = dir.split('/').pop()!;
      expect(readdirSync(root).filter((n) => n.startsWith(`${name}.`))).toEqual([]);
    }
  });

  it('validates arrays before touching the disk', () => {
    const dir = freshDir();
    expect(() => saveCheckpoint(dir, [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array(3) }])).toThrow(/'x': shape \[2\] has 2 elements but data has 3/);
    expect(existsSync(dir)).toBe(false);
    expect(() => saveCheckpoint(dir, [], { shardBytes: 0 })).toThrow(/shardBytes must be a positive number, got 0/);
  });
});

// Every bad argument gets one error that names the argument and the value.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { ProductKeys, type ProductKeysConfig } from './product-keys.js';
import { retrieve, type RetrieveOptions } from './retrieve.js';

describe('ProductKeys config errors', () => {
  const good: ProductKeysConfig = { numKeys: 16, heads: 2, dimKey: 3 };
  const cases: [string, unknown, RegExp][] = [
    ['not a perfect square', { ...good, numKeys: 1000 }, /ProductKeys: numKeys must be a perfect square \(nearest: 961 = 31\^2, 1024 = 32\^2\), got 1000/],
    ['too few keys', { ...good, numKeys: 1 }, /ProductKeys: numKeys must be a perfect square between 4 and 2147395600.*got 1$/],
    ['too many keys', { ...good, numKeys: 46341 ** 2 }, /numKeys must be a perfect square between 4 and 2147395600.*got 2147488281/],
    ['fractional numKeys', { ...good, numKeys: 16.5 }, /numKeys .* got 16\.5/],
    ['string numKeys', { ...good, numKeys: '16' }, /numKeys .* got "16"/],
    ['zero heads', { ...good, heads: 0 }, /ProductKeys: heads must be an integer between 1 and 4096, got 0/],
    ['fractional heads', { ...good, heads: 1.5 }, /heads must be an integer .* got 1\.5/],
    ['zero dimKey', { ...good, dimKey: 0 }, /ProductKeys: dimKey must be an integer between 1 and 65536, got 0/],
    ['missing dimKey', { numKeys: 16, heads: 2 }, /dimKey must be an integer .* got undefined/],
    ['sharedKeys not boolean', { ...good, sharedKeys: 'yes' }, /ProductKeys: sharedKeys must be a boolean, got "yes"/],
    ['fractional seed', { ...good, seed: 0.5 }, /ProductKeys: seed must be an integer or an Rng, got 0\.5/],
    ['empty name', { ...good, name: '' }, /ProductKeys: name must be a non-empty string, got ""/],
    ['no config', undefined, /ProductKeys: config must be an object, got undefined/],
  ];
  for (const [what, config, message] of cases) {
    it(what, () => {
      const before = tf.memory().numTensors;
      expect(() => new ProductKeys(config as ProductKeysConfig)).toThrow(message);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe('loadPeerPytorchKeys errors', () => {
  it('rejects a wrong shape, a wrong dtype and differing heads for shared keys', () => {
    const pk = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 3 });
    const shared = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 3, sharedKeys: true });
    const wrongShape = tf.zeros([2, 4, 3, 2]);
    const wrongDtype = tf.zeros([2, 4, 2, 3], 'int32');
    const differing = tf.concat([tf.zeros([1, 4, 2, 3]), tf.ones([1, 4, 2, 3])]);
    const before = tf.memory().numTensors;
    expect(() => pk.loadPeerPytorchKeys(wrongShape)).toThrow(/ProductKeys.loadPeerPytorchKeys: keys must have shape \[2, 4, 2, 3\], got \[2, 4, 3, 2\]/);
    expect(() => pk.loadPeerPytorchKeys(wrongDtype)).toThrow(/keys must have dtype float32, got int32 \(shape \[2, 4, 2, 3\]\)/);
    expect(() => pk.loadPeerPytorchKeys(tf.zeros([4, 2, 3]))).toThrow(/keys must have rank 4 \[heads, sqrtN, 2, dimKey\], got shape \[4, 2, 3\]/);
    expect(() => shared.loadPeerPytorchKeys(differing)).toThrow(/share one key pair, but the heads of keys differ \(max \|difference\| 1\)/);
    expect(tf.memory().numTensors).toBe(before + 1); // the zeros made inline above
    tf.dispose([wrongShape, wrongDtype, differing]);
    pk.dispose();
    shared.dispose();
  });

  it('rejects values of the wrong length and differing heads given as a Float32Array', () => {
    const pk = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 3 });
    const shared = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 3, sharedKeys: true });
    expect(() => pk.loadPeerPytorchKeys(new Float32Array(47))).toThrow(/ProductKeys.loadPeerPytorchKeys: keys must hold 48 values \(shape \[2, 4, 2, 3\]\), got 47/);
    const values = new Float32Array(48);
    values[30] = -0.25;
    expect(() => shared.loadPeerPytorchKeys(values)).toThrow(/share one key pair, but the heads of keys differ \(max \|difference\| 0\.25\)/);
    pk.dispose();
    shared.dispose();
  });
});

describe('retrieve argument errors', () => {
  const pk = new ProductKeys({ numKeys: 64, heads: 2, dimKey: 3 });
  const queries = tf.zeros([5, 2, 6]);
  afterAll(() => {
    pk.dispose();
    queries.dispose();
  });
  const expectError = (f: () => unknown, message: RegExp) => {
    const before = tf.memory().numTensors;
    expect(f).toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
  };

  it('checks queries', () => {
    const int = tf.zeros([5, 2, 6], 'int32');
    const rank2 = tf.zeros([10, 6]);
    const width = tf.zeros([5, 2, 8]);
    const heads = tf.zeros([5, 3, 6]);
    const disposed = tf.zeros([5, 2, 6]);
    disposed.dispose();
    expectError(() => retrieve(int, pk, { k: 2 }), /retrieve: queries must have dtype float32, got int32 \(shape \[5, 2, 6\]\)/);
    expectError(() => retrieve(rank2, pk, { k: 2 }), /retrieve: queries must have rank 3 \[tokens, heads, 2 \* dimKey\], got shape \[10, 6\]/);
    expectError(() => retrieve(width, pk, { k: 2 }), /retrieve: queries must have shape \[tokens, 2, 6\], got \[5, 2, 8\]/);
    expectError(() => retrieve(heads, pk, { k: 2 }), /retrieve: queries must have shape \[tokens, 2, 6\], got \[5, 3, 6\]/);
    expectError(() => retrieve([[1]] as unknown as tf.Tensor, pk, { k: 2 }), /retrieve: queries must be a float32 tensor .* got \[\[1\]\]/);
    expectError(() => retrieve(disposed, pk, { k: 2 }), /retrieve: queries is a disposed tensor/);
    tf.dispose([int, rank2, width, heads]);
  });

  it('checks keys', () => {
    const c = tf.zeros([2, 8, 3]);
    const threeSets = tf.zeros([3, 8, 3]);
    const otherShape = tf.zeros([2, 9, 3]);
    const int = tf.zeros([2, 8, 3], 'int32');
    const one = tf.zeros([2, 1, 3]);
    expectError(() => retrieve(queries, null as unknown as ProductKeys, { k: 2 }), /retrieve: keys must be ProductKeys or \{ subKeys1, subKeys2 \}, got null/);
    expectError(() => retrieve(queries, { subKeys1: c, subKeys2: otherShape }, { k: 2 }), /retrieve: keys.subKeys2 must have shape \[2, 8, 3\], got \[2, 9, 3\]/);
    expectError(() => retrieve(queries, { subKeys1: int, subKeys2: c }, { k: 2 }), /retrieve: keys.subKeys1 must have dtype float32, got int32/);
    expectError(
      () => retrieve(queries, { subKeys1: threeSets, subKeys2: threeSets }, { k: 2 }),
      /retrieve: queries must have shape \[tokens, 3, 6\], got \[5, 2, 6\]/,
    );
    expectError(
      () => retrieve(queries, { subKeys1: threeSets, subKeys2: threeSets, heads: 2 }, { k: 2 }),
      /retrieve: keys.subKeys1 must have 1 \(shared\) or 2 \(one per head\) key sets on axis 0, got shape \[3, 8, 3\]/,
    );
    expectError(() => retrieve(queries, { subKeys1: one, subKeys2: one }, { k: 1 }), /keys.subKeys1 must hold between 2 and 46340 sub-keys \(axis 1\), got shape \[2, 1, 3\]/);
    expectError(() => retrieve(queries, { subKeys1: c, subKeys2: undefined as unknown as tf.Tensor }, { k: 2 }), /keys.subKeys2 must be a float32 tensor .* got undefined/);
    tf.dispose([c, threeSets, otherShape, int, one]);
  });

  it('checks options', () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /retrieve: options must be an object like \{ k: 16 \}, got undefined/],
      [{}, /retrieve: options.k must be an integer from 1 to 8 \(bounded by sqrt\(numKeys\) = 8\), got undefined/],
      [{ k: 0 }, /options.k must be an integer from 1 to 8 .* got 0/],
      [{ k: 9 }, /options.k must be an integer from 1 to 8 \(bounded by sqrt\(numKeys\) = 8\), got 9/],
      [{ k: 2.5 }, /options.k .* got 2\.5/],
      [{ k: 4, candidateK: 3 }, /options.candidateK must be an integer from 4 to 8 \(bounded by k = 4 and sqrt\(numKeys\) = 8\), got 3/],
      [{ k: 4, candidateK: 9 }, /options.candidateK must be an integer from 4 to 8 .* got 9/],
      [{ k: 2, chunkSize: 0 }, /retrieve: options.chunkSize must be an integer >= 1, got 0/],
      [{ k: 2, chunkSize: 1.5 }, /options.chunkSize must be an integer >= 1, got 1\.5/],
      [{ k: 2, maxChunkElements: -1 }, /retrieve: options.maxChunkElements must be an integer >= 1, got -1/],
    ];
    for (const [options, message] of cases) expectError(() => retrieve(queries, pk, options as RetrieveOptions), message);
  });
});

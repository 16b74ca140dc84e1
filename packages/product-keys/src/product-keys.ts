// A product-key set: two sub-key tables per head whose concatenations form N = n^2 full keys.
// Axes: H' key sets (1 when shared, else h heads), n = sqrt(N) sub-keys per half, dk key width.
import * as tf from '@tensorflow/tfjs-core';
import { formatValue, onDevice, Rng } from '@peer/backend';
import { checkInteger, checkNumKeys, checkShape, checkTensor, shapeText } from './checks.js';

export interface ProductKeysConfig {
  /** N, the number of full keys (experts or memory slots): a perfect square, 4 <= N <= 46340^2. */
  numKeys: number;
  /** h, the number of retrieval heads. */
  heads: number;
  /** dk, the width of each sub-key (queries are 2 * dk wide per head). */
  dimKey: number;
  /** One pair of sub-key tables for all heads (the paper's text) instead of one per head (PKM code). Default false. */
  sharedKeys?: boolean;
  /** Seed (or a stream) for the uniform initialization in [-1/sqrt(dk), 1/sqrt(dk)]. Default 0. */
  seed?: number | Rng;
  /** Prefix of the variable names (tfjs variable names must be unique). Default: tfjs chooses. */
  name?: string;
}

/** What `retrieve` needs: the two sub-key tables, each [H', n, dk], H' = 1 (shared) or h. */
export interface SubKeyTables {
  readonly subKeys1: tf.Tensor;
  readonly subKeys2: tf.Tensor;
  /** When present, queries must have exactly this many heads. */
  readonly heads?: number;
}

const WHERE = 'ProductKeys';

/**
 * The sub-keys of a product-key retrieval, held as trainable tfjs variables.
 * Full key of expert `i * sqrtN + j` for head `h` is `[subKeys1[h, i] ; subKeys2[h, j]]`.
 */
export class ProductKeys implements SubKeyTables {
  readonly numKeys: number;
  readonly sqrtN: number;
  readonly heads: number;
  readonly dimKey: number;
  readonly sharedKeys: boolean;
  /** First-half sub-keys C1, [H', sqrtN, dk]. */
  readonly subKeys1: tf.Variable<tf.Rank.R3>;
  /** Second-half sub-keys C2, [H', sqrtN, dk]. */
  readonly subKeys2: tf.Variable<tf.Rank.R3>;

  constructor(config: ProductKeysConfig) {
    if (typeof config !== 'object' || config === null) throw new Error(`${WHERE}: config must be an object, got ${formatValue(config)}`);
    this.sqrtN = checkNumKeys(WHERE, 'numKeys', config.numKeys);
    this.numKeys = config.numKeys;
    this.heads = checkInteger(WHERE, 'heads', config.heads, 1, 4096);
    this.dimKey = checkInteger(WHERE, 'dimKey', config.dimKey, 1, 65536);
    const shared = config.sharedKeys ?? false;
    if (typeof shared !== 'boolean') throw new Error(`${WHERE}: sharedKeys must be a boolean, got ${formatValue(shared)}`);
    this.sharedKeys = shared;
    const seed = config.seed ?? 0;
    if (!(seed instanceof Rng) && (typeof seed !== 'number' || !Number.isInteger(seed))) {
      throw new Error(`${WHERE}: seed must be an integer or an Rng, got ${formatValue(seed)}`);
    }
    if (config.name !== undefined && (typeof config.name !== 'string' || config.name === '')) {
      throw new Error(`${WHERE}: name must be a non-empty string, got ${formatValue(config.name)}`);
    }

    const sets = shared ? 1 : this.heads;
    const size = sets * this.sqrtN * this.dimKey;
    if (size > 2 ** 31 - 1) {
      throw new Error(`${WHERE}: ${sets} x ${this.sqrtN} x ${this.dimKey} sub-keys per table exceed one tensor's limit (2^31 - 1 values)`);
    }
    // Table 1 then table 2 from one stream, so a seed fixes both.
    const rng = seed instanceof Rng ? seed : new Rng(seed);
    const bound = 1 / Math.sqrt(this.dimKey);
    const shape: [number, number, number] = [sets, this.sqrtN, this.dimKey];
    const makeTable = (suffix: string): tf.Variable<tf.Rank.R3> => {
      const init = tf.tensor3d(rng.fillUniform(new Float32Array(size), -bound, bound), shape);
      const v = tf.variable(init, true, config.name === undefined ? undefined : `${config.name}/${suffix}`);
      init.dispose(); // tf.variable keeps its own copy
      return v;
    };
    this.subKeys1 = makeTable('subKeys1');
    this.subKeys2 = makeTable('subKeys2');
  }

  /** The trainable variables: [subKeys1, subKeys2]. */
  variables(): tf.Variable[] {
    return [this.subKeys1, this.subKeys2];
  }

  /**
   * The keys in PEER-pytorch's layout `[h, sqrtN, 2, dk]` (its `self.keys`): index 0 on axis 2 is the
   * first half. Shared keys are repeated for every head. The caller owns the returned tensor.
   */
  toPeerPytorchKeys(): tf.Tensor4D {
    return tf.tidy(() => {
      const pair = tf.stack([this.subKeys1, this.subKeys2], 2) as tf.Tensor4D;
      return this.sharedKeys ? (tf.tile(pair, [this.heads, 1, 1, 1]) as tf.Tensor4D) : pair;
    });
  }

  /**
   * Loads keys in PEER-pytorch's layout `[h, sqrtN, 2, dk]`, as a tensor or as its row-major values.
   * With shared keys every head must hold the same pair (as `toPeerPytorchKeys` writes it); on a
   * device engine that check needs the values on the host, so shared keys take a Float32Array there.
   * `keys` is not disposed.
   */
  loadPeerPytorchKeys(keys: tf.Tensor | Float32Array): void {
    const where = `${WHERE}.loadPeerPytorchKeys`;
    const shape = [this.heads, this.sqrtN, 2, this.dimKey];
    if (keys instanceof Float32Array) {
      const size = shape.reduce((a, b) => a * b, 1);
      if (keys.length !== size) throw new Error(`${where}: keys must hold ${size} values (shape ${shapeText(shape)}), got ${keys.length}`);
      if (this.sharedKeys) this.checkHeadsEqual(where, keys);
      const sets = this.sharedKeys ? 1 : this.heads;
      const values = keys.subarray(0, sets * this.sqrtN * 2 * this.dimKey);
      tf.tidy(() => this.assignPair(tf.tensor4d(values, [sets, this.sqrtN, 2, this.dimKey])));
      return;
    }
    checkTensor(where, 'keys', keys, 4, '[heads, sqrtN, 2, dimKey]');
    checkShape(where, 'keys', keys.shape, shape);
    if (this.sharedKeys && onDevice()) {
      throw new Error(`${where}: shared keys are checked on the host, which cannot read a tensor synchronously on the ${tf.getBackend()} engine; pass the values as a Float32Array`);
    }
    tf.tidy(() => {
      let pair = keys as tf.Tensor4D;
      if (this.sharedKeys) {
        pair = tf.slice(keys as tf.Tensor4D, [0, 0, 0, 0], [1, this.sqrtN, 2, this.dimKey]);
        const maxDiff = tf.max(tf.abs(tf.sub(keys, pair))).dataSync()[0]!;
        if (maxDiff !== 0) throw new Error(sharedKeysDiffer(where, maxDiff));
      }
      this.assignPair(pair);
    });
  }

  /** Every head of `keys` ([h, sqrtN, 2, dk] values) equals head 0, or one error with the largest difference. */
  private checkHeadsEqual(where: string, keys: Float32Array): void {
    const perHead = this.sqrtN * 2 * this.dimKey;
    let maxDiff = 0;
    for (let i = perHead; i < keys.length; i++) maxDiff = Math.max(maxDiff, Math.abs(Math.fround(keys[i]! - keys[i % perHead]!)));
    if (maxDiff !== 0) throw new Error(sharedKeysDiffer(where, maxDiff));
  }

  /** subKeys1, subKeys2 <- the halves of `pair` [H', sqrtN, 2, dk]. */
  private assignPair(pair: tf.Tensor4D): void {
    const [first, second] = tf.unstack(pair, 2) as [tf.Tensor3D, tf.Tensor3D];
    this.subKeys1.assign(first);
    this.subKeys2.assign(second);
  }

  dispose(): void {
    this.subKeys1.dispose();
    this.subKeys2.dispose();
  }
}

function sharedKeysDiffer(where: string, maxDiff: number): string {
  return `${where}: these ProductKeys share one key pair, but the heads of keys differ (max |difference| ${maxDiff})`;
}

import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, currentBackend, initBackend, type BackendRequest } from './init-backend.js';

const NATIVE = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

describe('initBackend', () => {
  it("'auto' tries the native providers in order, then picks wasm here, and logs one line saying why", async () => {
    const lines: string[] = [];
    const choice = await initBackend({ backend: 'auto', log: (l) => lines.push(l) });
    // This machine has no working libtensorflow binding (engine-notes): both providers are skipped.
    expect(choice.backend).toBe('wasm');
    expect(choice.provider).toBe('@tensorflow/tfjs-backend-wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(choice.skipped.map((s) => s.backend)).toEqual(NATIVE);
    for (const s of choice.skipped) expect(s.reason.length).toBeGreaterThan(0);
    expect(choice.fixes).toHaveLength(16);
    expect(choice.fixes).toContain('OneHot (output in the requested dtype)');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\[peer\] backend: wasm via @tensorflow\/tfjs-backend-wasm \(skipped @tensorflow\/tfjs-node-gpu: .+; @tensorflow\/tfjs-node: .+\)$/);
    expect(lines[0]).not.toContain('\n');
    expect(currentBackend()).toEqual(choice);
  });

  it('the same request again returns the same choice', async () => {
    const a = await initBackend({ backend: 'wasm', log: false });
    const b = await initBackend({ backend: 'wasm', log: false });
    expect(b).toEqual(a);
    expect(a.skipped).toEqual([]);
  });

  it("an explicit 'tensorflow' that cannot load rejects with a one-line BackendUnavailableError", async () => {
    const err = await initBackend({ backend: 'tensorflow', log: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BackendUnavailableError);
    const e = err as BackendUnavailableError;
    expect(e.message).not.toContain('\n');
    expect(e.message).toMatch(/^backend 'tensorflow' is not available: @tensorflow\/tfjs-node-gpu: .+; @tensorflow\/tfjs-node: .+$/);
    expect(e.skipped.map((s) => s.backend)).toEqual(NATIVE);
    // Falling back is not its job: the engine in use is unchanged.
    expect(tf.getBackend()).toBe('wasm');
  });

  it("'cpu' runs the cpu engine without wasm fixes", async () => {
    const choice = await initBackend({ backend: 'cpu', log: false });
    expect(choice).toMatchObject({ backend: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', skipped: [], fixes: [] });
    expect(tf.getBackend()).toBe('cpu');
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0]);
    expect(y).toBe(11);
    await initBackend({ backend: 'wasm', log: false });
    expect(tf.getBackend()).toBe('wasm');
  });

  it('an unknown backend name rejects with the name and the valid choices', async () => {
    await expect(initBackend({ backend: 'gpu' as BackendRequest, log: false })).rejects.toThrow(
      "unknown backend 'gpu': expected one of auto, tensorflow, wasm, cpu",
    );
  });
});

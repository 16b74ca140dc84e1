// Engines that keep tensors on a GPU (webgpu) refuse synchronous reads in Node: `dataSync` throws
// there. Code on the training path asks `onDevice()` to keep indices and rows in tensors, and code
// that must read many tensors at once (checkpoints) first awaits `makeReadable`, after which their
// synchronous reads return the values the engine cached on the host.
import * as tf from '@tensorflow/tfjs-core';

/** True when the active engine keeps tensors on a GPU and refuses synchronous reads (webgpu). */
export function onDevice(): boolean {
  return tf.getBackend() === 'webgpu';
}

/**
 * Resolves once `dataSync()` of every tensor in `tensors` works on the active engine: on a device
 * engine it reads each one asynchronously (the engine keeps the values on the host until the tensor
 * is disposed); elsewhere it resolves at once.
 */
export async function makeReadable(tensors: Iterable<tf.Tensor>): Promise<void> {
  if (!onDevice()) return;
  await Promise.all(Array.from(tensors, (t) => t.data()));
}

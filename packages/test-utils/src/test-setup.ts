// test-utils cannot depend on @peer/backend (backend tests use test-utils), so its own tests set up
// the engine directly: '@tensorflow/tfjs' registers the gradients and the cpu engine.
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';

await tf.setBackend('cpu');

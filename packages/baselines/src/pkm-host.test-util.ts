// Test-only: the host objects behind a PKM layer, for tests that read the value table, its row
// gradient or the retrieved slots directly (they run on host engines, where these are plain arrays).
import type * as tf from '@tensorflow/tfjs-core';
import { HostExpertTable, RowSparseGrad, type ExpertTable, type RowGradient } from '@peer/expert-store';

export function hostValues(owner: { values: ExpertTable }): HostExpertTable {
  if (!(owner.values instanceof HostExpertTable)) throw new Error(`this test reads a host value table; this one is on the ${owner.values.placement}`);
  return owner.values;
}

export function hostGrad(owner: { valueGrad: RowGradient }): RowSparseGrad {
  if (!(owner.valueGrad instanceof RowSparseGrad)) throw new Error('this test reads a host row gradient');
  return owner.valueGrad;
}

export function hostRows(indices: Int32Array | tf.Tensor): Int32Array {
  if (!(indices instanceof Int32Array)) throw new Error('this test reads host slots; these are a device tensor');
  return indices;
}

// Safetensors files of one layer's state (any layer with stateEntries / loadStateEntries: the
// baselines here, PEER, or anything else that follows the feed-forward contract).
import { readSafetensors, writeSafetensors, type NamedArray, type SafetensorsMetadata, type WriteResult } from '@peer/expert-store';
import type { StateEntryGetter } from '@peer/feed-forward';

export interface StatefulLayer {
  stateEntries(prefix: string): NamedArray[];
  loadStateEntries(prefix: string, get: StateEntryGetter): void;
}

/** Writes every state entry of `layer` (names prefixed with `prefix`) to one safetensors file. */
export function saveLayerState(layer: StatefulLayer, path: string, options: { prefix?: string; metadata?: SafetensorsMetadata } = {}): WriteResult {
  return writeSafetensors(path, layer.stateEntries(options.prefix ?? ''), options.metadata);
}

/** Restores `layer` from a file written by `saveLayerState`; errors name the file and the entry. */
export function loadLayerState(layer: StatefulLayer, path: string, options: { prefix?: string } = {}): void {
  const file = readSafetensors(path);
  try {
    layer.loadStateEntries(options.prefix ?? '', file.get);
  } catch (err) {
    throw new Error(`${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

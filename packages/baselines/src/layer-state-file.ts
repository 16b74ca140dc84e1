// Safetensors files of one layer's state (any layer with stateEntries / loadStateEntries: the
// baselines here, PEER, or anything else that follows the feed-forward contract).
import { readSafetensors, writeSafetensors, type SafetensorsMetadata, type WriteResult } from '@peer/expert-store';
import type { FeedForwardLayer } from '@peer/feed-forward';

/** What saving and loading use of a layer: the contract's state members. */
export type StatefulLayer = Pick<FeedForwardLayer, 'stateEntries' | 'loadStateEntries'>;

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

// PEER-pytorch safetensors files: a new layer from weights, and the layer to a file.
// Layout and names: see pytorch-layout.ts.
import {
  readSafetensors,
  writeSafetensors,
  type NamedArray,
  type SafetensorsMetadata,
  type WriteResult,
} from '@peer/expert-store';
import { PeerConfigError, type PeerLayerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';
import { exportPeerPytorch, loadPeerPytorchInto, peerConfigFromPytorch, type EntryGetter } from './pytorch-layout.js';

/** A new layer holding PEER-pytorch weights; the config comes from `peerConfigFromPytorch`. */
export function importPeerPytorch(arrays: readonly NamedArray[] | EntryGetter, overrides: Partial<PeerLayerConfig> = {}): PeerLayer {
  const get = typeof arrays === 'function' ? arrays : getterOf(arrays);
  const config = peerConfigFromPytorch(get, overrides);
  // Random initialization is wasted work here: the weights are loaded next.
  const layer = new PeerLayer(config);
  try {
    loadPeerPytorchInto(layer, get);
  } catch (err) {
    layer.dispose();
    throw err;
  }
  return layer;
}

function getterOf(arrays: readonly NamedArray[]): EntryGetter {
  const byName = new Map(arrays.map((a) => [a.name, a]));
  return (name) => byName.get(name);
}

/** Writes the layer to `path` in PEER-pytorch's layout. */
export function savePeerPytorch(layer: PeerLayer, path: string, metadata: SafetensorsMetadata = {}): WriteResult {
  const c = layer.config;
  return writeSafetensors(path, exportPeerPytorch(layer), {
    format: 'pt',
    peer_config: JSON.stringify({ topK: c.topK, scores: c.scores, activation: c.activation, candidateK: c.candidateK, sharedKeys: c.sharedKeys }),
    ...metadata,
  });
}

/**
 * A layer from a PEER-pytorch safetensors file. Settings the shapes cannot tell (topK, activation,
 * ...) come from the file's `peer_config` metadata when we wrote it, then from `overrides`.
 */
export function loadPeerPytorch(path: string, overrides: Partial<PeerLayerConfig> = {}): PeerLayer {
  const file = readSafetensors(path);
  let stored: Partial<PeerLayerConfig> = {};
  const meta = file.metadata?.peer_config;
  if (meta !== undefined) {
    try {
      stored = JSON.parse(meta) as Partial<PeerLayerConfig>;
    } catch {
      throw new PeerConfigError('peer_config', meta, `the metadata of ${path} is not valid JSON`);
    }
  }
  return importPeerPytorch((name) => file.get(name), { ...stored, ...overrides });
}

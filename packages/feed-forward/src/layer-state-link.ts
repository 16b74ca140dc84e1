// The link between a model.json and the state of its feed-forward layers that lives outside tfjs
// variables (expert tables, sparse optimizer moments, dropout streams).
//
// tfjs's save path hands an IOHandler only the model topology and the variables' bytes, and its load
// path builds layers from their configs before any weights arrive. So a wrapped layer puts a token,
// `stateId`, in its config: when saving, the file-system handler finds the live layer by that token
// and writes its state beside model.json (naming the file in the config instead); when loading, the
// handler reads the file, parks its entries under a fresh token, and the layer built from the
// config takes them. Tokens are lowercase hex: tfjs rewrites config strings between camelCase and
// snake_case on save and load, which leaves such strings as they are.
import { randomBytes } from 'node:crypto';
import type { NamedArray } from '@peer/expert-store';
import type { StateEntryGetter } from './feed-forward-layer.js';

/** The config key of the token (tfjs writes it as `state_id` in model.json). */
export const STATE_ID_KEY = 'stateId';
/** The config key naming the state file in a saved model.json (`state_file` there). */
export const STATE_FILE_KEY = 'stateFile';

/** What the file-system handler needs of a live wrapped layer. */
export interface StatefulTfLayer {
  readonly name: string;
  stateEntries(): NamedArray[];
}

const live = new Map<string, WeakRef<StatefulTfLayer>>();
/** Entries parked for a layer about to be built, and where they came from (for errors). */
export interface LoadedState {
  get: StateEntryGetter;
  source: string;
}

const loaded = new Map<string, LoadedState>();

export function newStateId(): string {
  return `s${randomBytes(12).toString('hex')}`;
}

export function registerLiveLayer(id: string, layer: StatefulTfLayer): void {
  live.set(id, new WeakRef(layer));
}

export function unregisterLiveLayer(id: string): void {
  live.delete(id);
}

/** The live layer that put `id` in its config, if it still exists. */
export function liveLayer(id: string): StatefulTfLayer | undefined {
  const layer = live.get(id)?.deref();
  if (!layer) live.delete(id);
  return layer;
}

/** Parks loaded entries for the layer that will be built from a config carrying the returned token. */
export function parkLoadedState(state: LoadedState): string {
  const id = newStateId();
  loaded.set(id, state);
  return id;
}

/** Takes (once) the entries parked under `id`. */
export function takeLoadedState(id: string): LoadedState | undefined {
  const state = loaded.get(id);
  loaded.delete(id);
  return state;
}

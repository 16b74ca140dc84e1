// Which arena a host table keeps its rows in (internal to the expert store: gradients, optimizers
// and the mixture allocate beside the rows; nothing outside the package sees an arena).
import type { Arena } from '@peer/backend/wasm';

const arenas = new WeakMap<object, Arena>();

export function setArenaOf(table: object, arena: Arena | undefined): void {
  if (arena) arenas.set(table, arena);
  else arenas.delete(table);
}

/** The arena holding `table`'s float32 rows, if any. */
export function arenaOf(table: object): Arena | undefined {
  return arenas.get(table);
}

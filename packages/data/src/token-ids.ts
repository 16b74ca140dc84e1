// Small helpers shared by the tokenizers: accepting any id container, validating ids.

/** Ids as an indexable array (typed arrays and arrays pass through). */
export function idsToArrayLike(ids: ArrayLike<number> | Iterable<number>): ArrayLike<number> {
  if (typeof (ids as ArrayLike<number>).length === 'number') return ids as ArrayLike<number>;
  return Array.from(ids as Iterable<number>);
}

export function checkTokenId(id: number, position: number, tokenizer: string, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`${tokenizer} tokenizer: id ${id} at position ${position} is outside [0, ${vocabSize})`);
  }
}

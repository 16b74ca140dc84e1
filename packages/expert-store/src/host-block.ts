// One storage abstraction for a host table's arrays (rows, optimizer state, gradient slots,
// mixture scratch): a block lives in the table's arena when it has one and there is room (SIMD
// kernels reach it by byte offset), else in a plain typed array (JS loops). Either way `array` is
// a live view: arena views are re-created after the memory grows.
import { ArenaArray, type Arena, type ArenaArrayKind } from '@peer/backend/wasm';

type Ctor<T extends ArenaArrayKind> = (new (length: number) => T) &
  (new (buffer: ArrayBuffer, byteOffset: number, length: number) => T) & { BYTES_PER_ELEMENT: number };

export class HostBlock<T extends ArenaArrayKind> {
  private constructor(
    private readonly inArena: ArenaArray<T> | undefined,
    private plain: T | undefined,
  ) {}

  /** `length` zeroed elements in `arena` when given and there is room, else plain. */
  static alloc<T extends ArenaArrayKind>(arena: Arena | undefined, length: number, ctor: Ctor<T>): HostBlock<T> {
    const block = arena ? ArenaArray.alloc(arena, length, ctor) : undefined;
    return block ? new HostBlock<T>(block, undefined) : new HostBlock<T>(undefined, new ctor(length));
  }

  /** A block in `arena` only, or undefined when it does not fit. */
  static allocInArena<T extends ArenaArrayKind>(arena: Arena, length: number, ctor: Ctor<T>): HostBlock<T> | undefined {
    const block = ArenaArray.alloc(arena, length, ctor);
    return block ? new HostBlock<T>(block, undefined) : undefined;
  }

  /** A plain block over `array` (taken over, not copied). */
  static plain<T extends ArenaArrayKind>(array: T): HostBlock<T> {
    return new HostBlock<T>(undefined, array);
  }

  get array(): T {
    return this.inArena ? this.inArena.array : this.plain!;
  }

  get length(): number {
    return this.inArena ? this.inArena.length : this.plain!.length;
  }

  /** Byte offset in `arena` when the block lives there, else undefined. */
  offsetIn(arena: Arena | undefined): number | undefined {
    return this.inArena && arena && this.inArena.arena === arena ? this.inArena.offset : undefined;
  }

  /** Stores `loaded`: copied into an arena block; a plain block takes over an array read freshly for it (`fresh`), else copies. */
  take(loaded: T, fresh: boolean): void {
    if (!this.inArena && fresh) this.plain = loaded;
    else this.array.set(loaded as never);
  }
}

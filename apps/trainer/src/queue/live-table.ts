// Status output of a queued sweep: on a terminal, the run table redrawn in place with log lines
// above it; otherwise (a pipe, a CI log) only the log lines, each once.
import { clearScreenDown, moveCursor } from 'node:readline';

export class LiveTable {
  private drawn = 0;
  private last: string[] = [];

  constructor(
    private readonly stream: NodeJS.WriteStream,
    readonly tty: boolean,
  ) {}

  private clear(): void {
    if (this.drawn === 0) return;
    moveCursor(this.stream, 0, -this.drawn);
    clearScreenDown(this.stream);
    this.drawn = 0;
  }

  private draw(lines: string[]): void {
    // never wider than the terminal: a wrapped line would break the cursor arithmetic
    const width = this.stream.columns || 120;
    const shown = lines.map((l) => (l.length >= width ? `${l.slice(0, width - 2)}…` : l));
    this.stream.write(`${shown.join('\n')}\n`);
    this.drawn = shown.length;
  }

  log(line: string): void {
    if (!this.tty) {
      this.stream.write(`${line}\n`);
      return;
    }
    this.clear();
    this.stream.write(`${line}\n`);
    this.draw(this.last);
  }

  /** Replaces the table (terminal only). */
  render(lines: string[]): void {
    this.last = lines;
    if (!this.tty) return;
    this.clear();
    this.draw(lines);
  }

  /** Leaves the last table on screen. */
  stop(): void {
    this.drawn = 0;
  }
}

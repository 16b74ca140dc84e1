/** An error meant for the user: printed as one line, no stack trace, with this exit code. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 2,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

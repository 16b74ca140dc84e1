// Parsers of flag values shared by every peer-train command. Commander prefixes their message with
// the flag and the value ("option '--seed <n>' argument '' is invalid. expected ..."), one line.
import { InvalidArgumentError, Option } from 'commander';

/** An integer >= `min`; rejects '', whitespace, fractions, exponents beyond safe integers and words. */
export function intArg(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, got '${value}'`);
    return n;
  };
}

/** A finite number for which `check` holds (`what` says which, for the message); rejects ''. */
export function numberArg(check: (n: number) => boolean, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`expected ${what}, got '${value}'`);
    return n;
  };
}

/** Collects a repeatable flag's values in order. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `--threads N`: threads of the wasm engine (default: the config's engine.threads, else every core). */
export function threadsOption(): Option {
  return new Option('--threads <n>', "threads of the wasm engine (default: the config's engine.threads, else every core)").argParser(intArg(1));
}

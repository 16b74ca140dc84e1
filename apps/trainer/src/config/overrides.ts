// `--set key.path=value` overrides and the deep merge of presets, config files and flags.
import { UsageError } from '../errors.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isPlainObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * The value of `--set key=value`: `true`/`false`/`null`, a number (`3`, `1e-3`, `6e18`), JSON for
 * arrays, objects and quoted strings, anything else a plain string.
 */
export function parseSetValue(raw: string, key: string): Json {
  const text = raw.trim();
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text === 'null') return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text)) return Number(text);
  if (/^[[{"]/.test(text)) {
    try {
      return JSON.parse(text) as Json;
    } catch (err) {
      throw new UsageError(`--set ${key}: value ${raw} is not valid JSON (${(err as Error).message})`);
    }
  }
  return raw;
}

/** Splits `key.path=value`; the key must be dotted identifiers. */
export function parseSetArg(arg: string): { path: string[]; value: Json } {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set expects key.path=value, got '${arg}'`);
  const key = arg.slice(0, eq).trim();
  if (!/^[A-Za-z_][\w]*(\.[\w]+)*$/.test(key)) throw new UsageError(`--set: '${key}' is not a config key (expected e.g. optim.lr)`);
  return { path: key.split('.'), value: parseSetValue(arg.slice(eq + 1), key) };
}

/** Writes `value` at `path` in `target` (a fresh copy is returned), creating objects on the way. */
export function setPath(target: JsonObject, path: readonly string[], value: Json): JsonObject {
  const root = structuredClone(target);
  let node: JsonObject = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    const next = node[key];
    if (next === undefined) node[key] = {};
    else if (!isPlainObject(next)) {
      throw new UsageError(`--set ${path.join('.')}: '${path.slice(0, i + 1).join('.')}' is ${JSON.stringify(next)}, not a group of settings`);
    }
    node = node[key] as JsonObject;
  }
  node[path.at(-1)!] = value;
  return root;
}

/** `override` on top of `base`: objects merge key by key, anything else (arrays included) replaces. */
export function deepMerge(base: JsonObject, override: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const prev = out[key];
    out[key] = isPlainObject(prev) && isPlainObject(value) ? deepMerge(prev, value) : structuredClone(value);
  }
  return out;
}

/** Dotted paths (`a.b.c`) where two JSON values differ; arrays compare as wholes. */
export function diffPaths(a: Json | undefined, b: Json | undefined, prefix = ''): string[] {
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(root)'];
}

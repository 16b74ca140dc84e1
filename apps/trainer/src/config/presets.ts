// Presets: small JSON files in apps/trainer/presets/, each a partial config on top of the schema's
// defaults. A preset may start from another (`"extends": "dense"`) and carries a one-line
// `"description"`. Config files given with --config use the same format.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import { deepMerge, isPlainObject, type JsonObject } from './overrides.js';

/** The folder of @peer/trainer (holding package.json and presets/), from src/ or dist/ alike. */
export function trainerRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@peer/trainer') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the @peer/trainer package folder');
    dir = up;
  }
}

export function presetsDir(): string {
  return join(trainerRoot(), 'presets');
}

export function presetNames(): string[] {
  return readdirSync(presetsDir())
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter((name) => !isSweepPreset(loadPreset(name)))
    .sort();
}

/** Top-level keys of a preset file that are not config fields. */
const META_KEYS = ['extends', 'description', '$schema'];

function readConfigObject(path: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new UsageError(`${what} not found: ${path}`);
    throw new UsageError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(value)) throw new UsageError(`${what} ${path} must hold a JSON object`);
  return value;
}

/** Follows `extends` chains and drops the meta keys. `seen` guards against cycles. */
function expand(obj: JsonObject, what: string, seen: string[]): JsonObject {
  const { extends: parent, ...rest } = obj;
  for (const key of META_KEYS) delete rest[key];
  if (parent === undefined) return rest;
  if (typeof parent !== 'string') throw new UsageError(`${what}: "extends" must be a preset name, got ${JSON.stringify(parent)}`);
  return deepMerge(loadPresetObject(parent, seen), rest);
}

function loadPresetObject(name: string, seen: string[] = []): JsonObject {
  if (seen.includes(name)) throw new UsageError(`preset '${name}' extends itself (${[...seen, name].join(' -> ')})`);
  if (!/^[\w.-]+$/.test(name) || !existsSync(join(presetsDir(), `${name}.json`))) {
    throw new UsageError(`unknown preset '${name}': expected one of ${presetNames().join(', ')}`);
  }
  return expand(readConfigObject(join(presetsDir(), `${name}.json`), `preset ${name}`), `preset ${name}`, [...seen, name]);
}

/** Sweep presets (`{"sweep": ...}`, read by `peer-train sweep`) share the presets folder. */
export function isSweepPreset(obj: JsonObject): boolean {
  return isPlainObject(obj.sweep);
}

/** A preset as a partial config (its `extends` chain merged). */
export function loadPreset(name: string): JsonObject {
  return loadPresetObject(name);
}

export function presetDescription(name: string): string {
  const obj = readConfigObject(join(presetsDir(), `${name}.json`), `preset ${name}`);
  return typeof obj.description === 'string' ? obj.description : '';
}

/**
 * A config file given with --config: a partial config like a preset (it may `extend` a preset), or
 * a run's config.json (its `config` field is used, so any run can be re-run from its folder).
 */
export function loadConfigFile(path: string): JsonObject {
  const abs = resolve(path);
  const obj = readConfigObject(abs, 'config file');
  if (isPlainObject(obj.config) && isPlainObject(obj.versions)) return obj.config;
  return expand(obj, `config file ${path}`, []);
}

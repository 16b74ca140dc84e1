// From what the user typed to one validated TrainConfig:
//   schema defaults <- preset (or --config file) <- first-class flags <- --set overrides (in order)
import type { z } from 'zod';
import { formatValue } from '@peer/backend';
import { createTokenizer, DataError, type TokenizerSpec } from '@peer/data';
import { parseModelConfig } from '@peer/model';
import { UsageError } from '../errors.js';
import { isPlainObject, parseSetArg, setPath, type Json, type JsonObject } from './overrides.js';
import { isSweepPreset, loadConfigFile, loadPreset } from './presets.js';
import { TrainConfigSchema, type TrainConfig } from './schema.js';

export const DEFAULT_PRESET = 'default';

export interface ConfigFlags {
  ffw?: string;
  data?: string;
  textField?: string;
  tokenizer?: string;
  steps?: number;
  flops?: number;
  seed?: number;
  backend?: string;
}

export interface ConfigSources {
  preset?: string;
  configFile?: string;
  flags?: ConfigFlags;
  /** `key.path=value` strings, applied in order after the flags. */
  sets?: string[];
}

export interface ResolvedConfig {
  config: TrainConfig;
  /** Where the base came from: `preset default`, `config file path/x.json`. */
  source: string;
  /** Short name for the run folder: the preset name or the config file's base name. */
  name: string;
}

/** One line for the first validation problem (the one to fix first), naming the key and the value. */
export function formatConfigError(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `'${path ? `${path}.` : ''}${k}'`).join(', ');
    return `invalid config: unknown key${issue.keys.length > 1 ? 's' : ''} ${keys}`;
  }
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? 's' : ''})` : '';
  return `invalid config: ${path || '(root)'} = ${formatValue(issue.input, { maxLength: 60, undefinedText: 'missing' })}: ${issue.message}${more}`;
}

/** Validates a raw config object (defaults filled, data.seqLen resolved) or throws a UsageError. */
export function validateConfig(raw: JsonObject): TrainConfig {
  const result = TrainConfigSchema.safeParse(raw, { reportInput: true });
  if (!result.success) throw new UsageError(formatConfigError(result.error));
  const parsed = result.data;
  // The model section fully resolved ('middle' -> block list, ffw.hidden filled): what config.json records.
  const config = { ...parsed, model: parseModelConfig(parsed.model), data: { ...parsed.data, seqLen: parsed.data.seqLen ?? parsed.model.seqLen } };
  let vocab: number;
  try {
    vocab = createTokenizer(config.data.tokenizer as TokenizerSpec).vocabSize;
  } catch (err) {
    if (err instanceof DataError) throw new UsageError(`invalid config: data.tokenizer = ${formatValue(config.data.tokenizer, { maxLength: 60, undefinedText: 'missing' })}: ${err.message}`);
    throw err;
  }
  if (config.model.vocabSize < vocab) {
    throw new UsageError(
      `invalid config: model.vocabSize = ${config.model.vocabSize} is smaller than the ${config.data.tokenizer} tokenizer's ${vocab} ids ` +
        `(--tokenizer sets both)`,
    );
  }
  return config;
}

/** model.vocabSize, when not given, is the tokenizer's vocabulary size. */
function withDefaultVocab(raw: JsonObject): JsonObject {
  const model = isPlainObject(raw.model) ? raw.model : {};
  if (model.vocabSize !== undefined) return raw;
  const data = isPlainObject(raw.data) ? raw.data : {};
  const name = typeof data.tokenizer === 'string' ? data.tokenizer : 'byte';
  try {
    return setPath(raw, ['model', 'vocabSize'], createTokenizer(name as TokenizerSpec).vocabSize);
  } catch (err) {
    if (err instanceof DataError) throw new UsageError(`invalid config: data.tokenizer = ${formatValue(name, { maxLength: 60, undefinedText: 'missing' })}: ${err.message}`);
    throw err;
  }
}

/** Applies the first-class flags to a raw config. */
export function applyFlags(raw: JsonObject, flags: ConfigFlags, explicitKeys: ReadonlySet<string>): JsonObject {
  let out = raw;
  const set = (path: string, value: Json) => (out = setPath(out, path.split('.'), value));
  if (flags.ffw !== undefined) {
    const model = isPlainObject(out.model) ? out.model : {};
    const ffw = isPlainObject(model.ffw) ? model.ffw : {};
    // A different kind's options mean nothing to the new kind: start from its defaults.
    if (ffw.kind !== flags.ffw) set('model.ffw', { kind: flags.ffw });
  }
  if (flags.data !== undefined) set('data.corpus', flags.data);
  if (flags.textField !== undefined) set('data.textField', flags.textField);
  if (flags.tokenizer !== undefined) {
    set('data.tokenizer', flags.tokenizer);
    if (!explicitKeys.has('model.vocabSize')) {
      try {
        set('model.vocabSize', createTokenizer(flags.tokenizer as TokenizerSpec).vocabSize);
      } catch (err) {
        if (err instanceof DataError) throw new UsageError(`--tokenizer ${flags.tokenizer}: ${err.message}`);
        throw err;
      }
    }
  }
  if (flags.steps !== undefined || flags.flops !== undefined) {
    if (flags.steps !== undefined && flags.flops !== undefined) throw new UsageError('give --steps or --flops, not both');
    const train = isPlainObject(out.train) ? { ...out.train } : {};
    delete train.steps;
    delete train.flops;
    if (flags.steps !== undefined) train.steps = flags.steps;
    else train.flops = flags.flops!;
    out = { ...out, train };
  }
  if (flags.seed !== undefined) {
    set('train.seed', flags.seed);
    set('model.seed', flags.seed);
  }
  if (flags.backend !== undefined) set('backend', flags.backend);
  return out;
}

export function resolveConfig(sources: ConfigSources): ResolvedConfig {
  if (sources.preset !== undefined && sources.configFile !== undefined) throw new UsageError('give --preset or --config, not both');
  let raw: JsonObject;
  let source: string;
  let name: string;
  if (sources.configFile !== undefined) {
    raw = loadConfigFile(sources.configFile);
    source = `config file ${sources.configFile}`;
    name = sources.configFile.replace(/^.*[\\/]/, '').replace(/\.json$/, '') || 'config';
  } else {
    name = sources.preset ?? DEFAULT_PRESET;
    raw = loadPreset(name);
    source = `preset ${name}`;
    if (isSweepPreset(raw)) throw new UsageError(`preset '${name}' describes a sweep, not one run: use peer-train sweep --preset ${name}`);
  }
  const sets = (sources.sets ?? []).map(parseSetArg);
  raw = applyFlags(raw, sources.flags ?? {}, new Set(sets.map((s) => s.path.join('.'))));
  for (const s of sets) raw = setPath(raw, s.path, s.value);
  raw = withDefaultVocab(raw);
  return { config: validateConfig(raw), source, name };
}

/** A config as plain JSON (for config.json and for comparing two configs). */
export function configToJson(config: TrainConfig): JsonObject {
  return JSON.parse(JSON.stringify(config)) as JsonObject;
}


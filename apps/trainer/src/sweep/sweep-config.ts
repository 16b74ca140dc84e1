// The configuration of an isoFLOP sweep: compute budgets x methods x model sizes. Each run's train
// config is the base config, then the size's changes, then the method's, then the method's changes
// at that size, with train.flops set to the budget (so steps = floor(budget / FLOPs per step)).
//
// A sweep file (apps/trainer/presets/<name>.json, or any file given with --config):
//   {
//     "description": "...",
//     "sweep": {
//       "base":    { "extends": "dense", "train": { "finalEvalBatches": 32 } },   a partial train config
//       "budgets": [1e14],                                                         training FLOPs per run
//       "methods": { "dense": {}, "peer": { "model": { "ffw": { "kind": "peer", "options": { ... } } } } },
//       "sizes":   [ { "name": "s", "config": { "model": { "dim": 128 } }, "methods": { "peer": { ... } } } ],
//       "plotX":   "active",                                                       x axis of the isoFLOP plot
//       "seeds":   [1, 2, 3],                    optional: one run per seed (ids end in -s<seed>); a size
//                                                may give its own "seeds" instead
//       "plot":    "experts"                     optional: isoflop (default), experts, active, query-norm
//     }
//   }
// A method whose config names no ffw kind gets the kind of its name (dense, moe, moe-ec, pkm, peer).
import { FEED_FORWARD_KINDS } from '@peer/feed-forward';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { deepMerge, isPlainObject, type JsonObject } from '../config/overrides.js';
import { formatConfigError } from '../config/resolve.js';
import { loadPreset, presetsDir } from '../config/presets.js';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The plot a sweep draws: isoFLOP curves (loss against parameters, a curve per method and budget),
 * or one of the paper's ablations: loss against the number of experts N (Figure 3a), loss against
 * the active experts h*k with a curve per h (Figure 3b), unevenness against N per query norm (Table 2).
 */
export const SWEEP_PLOTS = ['isoflop', 'experts', 'active', 'query-norm'] as const;
export type SweepPlot = (typeof SWEEP_PLOTS)[number];

const NAME = /^[A-Za-z0-9][\w.-]*$/;
const partialConfig = z.record(z.string(), z.unknown());

export const SweepSizeSchema = z.strictObject({
  /** Short name, used in run folder names and the tables. */
  name: z.string().regex(NAME, 'expected letters, digits, ".", "_" or "-"'),
  /** Partial train config of this size (model.dim, model.layers, ...). */
  config: partialConfig.default({}),
  /** Per-method partial configs at this size (e.g. PEER's numExperts growing with the model). */
  methods: z.record(z.string(), partialConfig).default({}),
  /** The seeds of this size's runs, instead of the sweep's (e.g. three seeds of one point to measure the noise). */
  seeds: z.array(z.int().min(0)).min(1).optional(),
});

export const SweepConfigSchema = z
  .strictObject({
    /** The partial train config every run starts from; may `extends` a preset. */
    base: partialConfig.default({}),
    /** Compute budgets in training FLOPs (3 x forward FLOPs per token x tokens). */
    budgets: z.array(z.number().positive().finite()).min(1),
    /** Method name -> partial train config (usually model.ffw). */
    methods: z.record(z.string().regex(NAME, 'expected letters, digits, ".", "_" or "-"'), partialConfig),
    sizes: z.array(SweepSizeSchema).min(1),
    /** x axis of the isoFLOP plot: active parameters per token (default) or all parameters. */
    plotX: z.enum(['active', 'total']).default('active'),
    /**
     * Seeds of each (budget, method, size): one run per seed with train.seed set. Optional without a
     * default, so that the record of a sweep started before the field existed still matches.
     */
    seeds: z.array(z.int().min(0)).min(1).optional(),
    /** The plot of the sweep's ablation (default isoflop); optional for the same reason as seeds. */
    plot: z.enum(SWEEP_PLOTS).optional(),
  })
  .superRefine((c, ctx) => {
    if (Object.keys(c.methods).length === 0) ctx.addIssue({ code: 'custom', path: ['methods'], message: 'name at least one method', input: c.methods });
    const names = c.sizes.map((s) => s.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['sizes', i, 'name'], message: 'repeated size name', input: n });
    });
    const budgets = c.budgets.map(budgetLabel);
    budgets.forEach((b, i) => {
      if (budgets.indexOf(b) !== i) ctx.addIssue({ code: 'custom', path: ['budgets', i], message: 'repeated budget', input: c.budgets[i] });
    });
    c.seeds?.forEach((seed, i) => {
      if (c.seeds!.indexOf(seed) !== i) ctx.addIssue({ code: 'custom', path: ['seeds', i], message: 'repeated seed', input: seed });
    });
    c.sizes.forEach((s, i) => {
      s.seeds?.forEach((seed, j) => {
        if (s.seeds!.indexOf(seed) !== j) ctx.addIssue({ code: 'custom', path: ['sizes', i, 'seeds', j], message: 'repeated seed', input: seed });
      });
      for (const m of Object.keys(s.methods)) {
        if (!(m in c.methods)) ctx.addIssue({ code: 'custom', path: ['sizes', i, 'methods', m], message: `not one of the sweep's methods (${Object.keys(c.methods).join(', ')})`, input: m });
      }
    });
  });

export type SweepConfig = z.output<typeof SweepConfigSchema>;

/** A run's id: `<budget>-<method>-<size>`, with `-s<seed>` when the sweep has several seeds. */
export function runId(label: string, method: string, size: string, seed: number | undefined, seeds: number): string {
  return `${label}-${method}-${size}${seed !== undefined && seeds > 1 ? `-s${seed}` : ''}`;
}

export interface LoadedSweep {
  /** Preset name or config file base name. */
  name: string;
  /** `preset quick-sweep` or `config file x.json`. */
  source: string;
  description: string;
  sweep: SweepConfig;
}

/** `1e+13` -> `1e13`, `2.5e+14` -> `2.5e14`: budgets as folder names and table labels. */
export function budgetLabel(budget: number): string {
  return budget.toExponential().replace('e+', 'e');
}

function readObject(path: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') throw new UsageError(`${what} not found: ${path}`);
    throw new UsageError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(value)) throw new UsageError(`${what} ${path} must hold a JSON object`);
  return value;
}

/** Validates a sweep object (the `sweep` section); errors name the key and the value. */
export function parseSweepConfig(raw: unknown, what: string): SweepConfig {
  const result = SweepConfigSchema.safeParse(raw, { reportInput: true });
  if (!result.success) throw new UsageError(formatConfigError(result.error).replace(/^invalid config:/, `invalid sweep config (${what}):`));
  return result.data;
}

function fromObject(obj: JsonObject, name: string, source: string): LoadedSweep {
  if (!isPlainObject(obj.sweep)) {
    throw new UsageError(`${source} is not a sweep config: it has no "sweep" section (train configs are used with peer-train train)`);
  }
  const description = typeof obj.description === 'string' ? obj.description : '';
  return { name, source, description, sweep: parseSweepConfig(obj.sweep, source) };
}

/** A sweep preset (apps/trainer/presets/<name>.json) or file. */
export function loadSweep(options: { preset?: string; config?: string }): LoadedSweep {
  if (options.preset !== undefined && options.config !== undefined) throw new UsageError('give --preset or --config, not both');
  if (options.config !== undefined) {
    const name = options.config.replace(/^.*[\\/]/, '').replace(/\.json$/, '') || 'sweep';
    return fromObject(readObject(resolve(options.config), 'sweep config file'), name, `config file ${options.config}`);
  }
  const name = options.preset ?? 'quick-sweep';
  const path = join(presetsDir(), `${name}.json`);
  if (!/^[\w.-]+$/.test(name) || !existsSync(path)) throw new UsageError(`unknown sweep preset '${name}' (no ${path})`);
  return fromObject(readObject(path, `preset ${name}`), name, `preset ${name}`);
}

/**
 * `override` on top of `base`. When the override changes the ffw kind, the base's ffw options (which
 * belong to the other kind) are dropped instead of merged; ffw.hidden (the dense blocks' width) stays.
 */
export function mergeRunConfig(base: JsonObject, override: JsonObject): JsonObject {
  const ffwOf = (o: JsonObject) => (isPlainObject(o.model) && isPlainObject(o.model.ffw) ? o.model.ffw : undefined);
  const newKind = ffwOf(override)?.kind;
  const oldFfw = ffwOf(base);
  let start = base;
  if (newKind !== undefined && oldFfw !== undefined && newKind !== (oldFfw.kind ?? 'dense')) {
    const { options: _dropped, ...ffw } = oldFfw;
    start = { ...base, model: { ...(base.model as JsonObject), ffw } };
  }
  return deepMerge(start, override);
}

/** The base config with its `extends` chain expanded and its meta keys dropped. */
export function expandBase(base: JsonObject): JsonObject {
  const { extends: parent, description: _d, $schema: _s, ...rest } = base;
  if (parent === undefined) return rest as JsonObject;
  if (typeof parent !== 'string') throw new UsageError(`sweep base: "extends" must be a preset name, got ${JSON.stringify(parent)}`);
  return deepMerge(loadPreset(parent), rest as JsonObject);
}

/**
 * The raw (unvalidated) train config of one run: base <- size <- method <- size.methods[method],
 * then the budget as train.flops (train.steps removed) and the seed (when given) as train.seed and model.seed.
 */
export function runConfig(sweep: SweepConfig, budget: number, method: string, size: SweepConfig['sizes'][number], seed?: number): JsonObject {
  let raw = expandBase(sweep.base as JsonObject);
  raw = mergeRunConfig(raw, size.config as JsonObject);
  let methodConfig = sweep.methods[method] as JsonObject;
  const kind = isPlainObject(methodConfig.model) && isPlainObject(methodConfig.model.ffw) ? methodConfig.model.ffw.kind : undefined;
  if (kind === undefined && (FEED_FORWARD_KINDS as readonly string[]).includes(method)) {
    methodConfig = deepMerge(methodConfig, { model: { ffw: { kind: method } } });
  }
  raw = mergeRunConfig(raw, methodConfig);
  const atSize = size.methods[method];
  if (atSize) raw = mergeRunConfig(raw, atSize as JsonObject);
  const train = isPlainObject(raw.train) ? { ...raw.train } : {};
  delete train.steps;
  train.flops = budget;
  if (seed === undefined) return { ...raw, train };
  // as `train --seed`: the initialization, the batch order and dropout
  train.seed = seed;
  const model = isPlainObject(raw.model) ? { ...raw.model, seed } : { seed };
  return { ...raw, model, train };
}

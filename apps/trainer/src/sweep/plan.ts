// From a sweep config to the list of runs: each run's train config is resolved and validated the way
// `peer-train train --config` will resolve it, and its model is built once (then
// disposed) for its FLOPs per token and parameter counts, hence its number of steps. Every problem
// (a bad config, a budget below one step) is found here, before anything is written or trained.
//
// The sweep folder:
//   sweep.json         the sweep config and the plan (a restart must match it; --extend rewrites it
//                      with a config whose plan keeps every run)
//   configs/<id>.json  each run's train config (given to `peer-train train --config`)
//   runs/<id>/         each run's folder
//   logs/<id>.log      each run's output
//   summary.csv, summary.md, seed-points.csv (with seeds), <plot>.svg/.png (isoflop by default), report.html
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { initBackend } from '@peer/backend';
import { diffPaths, type Json, type JsonObject } from '../config/overrides.js';
import { configToJson, resolveConfig } from '../config/resolve.js';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { buildModel } from '../run/build-model.js';
import { configHash } from '../run/checkpoint.js';
import { readJsonFile, writeJsonAtomic } from '../run/run-folder.js';
import { flopsPerStep, stepsForBudget, tokensPerStep } from '../train/flops.js';
import { plannedConfigDiff, startedRunConfig } from './run-sweep.js';
import { budgetLabel, runConfig, runId, type LoadedSweep, type SweepConfig } from './sweep-config.js';

export const SWEEP_FILE = 'sweep.json';
export const SWEEP_FORMAT = 'peer-train-sweep';

export interface PlannedRun {
  /** `<budget>-<method>-<size>`, e.g. `1e14-peer-m`; `-s<seed>` appended when the sweep has several seeds. */
  id: string;
  budget: number;
  budgetLabel: string;
  method: string;
  size: string;
  /** The run's train.seed and model.seed: only in sweeps with `seeds` (older records lack it). */
  seed?: number;
  /** Paths relative to the sweep folder. */
  config: string;
  dir: string;
  log: string;
  /** Hash of the resolved train config (a resumed run folder must have the same). */
  configHash: string;
  ffw: string;
  flopsPerToken: number;
  paramsTotal: number;
  paramsActive: number;
  tokensPerStep: number;
  steps: number;
}

export interface SweepRecord {
  format: typeof SWEEP_FORMAT;
  version: 1;
  name: string;
  source: string;
  description: string;
  createdAt: string;
  sweep: SweepConfig;
  runs: PlannedRun[];
}

/** What `dir` holds: nothing yet, or a sweep (its record). Anything else is refused. */
export function checkSweepFolder(dir: string, flag = '--out'): SweepRecord | undefined {
  const abs = resolve(dir);
  if (!existsSync(abs)) return undefined;
  if (!statSync(abs).isDirectory()) throw new UsageError(`${flag} ${dir} exists and is not a folder`);
  if (existsSync(join(abs, SWEEP_FILE))) {
    const record = readJsonFile<SweepRecord>(join(abs, SWEEP_FILE), 'sweep record');
    if (record?.format !== SWEEP_FORMAT || !Array.isArray(record.runs)) throw new UsageError(`${join(abs, SWEEP_FILE)} is not a peer-train sweep record`);
    return record;
  }
  if (readdirSync(abs).length > 0) throw new UsageError(`${flag} ${dir} is not empty and holds no sweep (no ${SWEEP_FILE}); choose an empty or new folder`);
  return undefined;
}

export interface SweepPlan {
  runs: PlannedRun[];
  /** Each run's raw train config, as written to its config file. */
  configs: Map<string, JsonObject>;
  /** Each run's resolved train config. */
  resolved: Map<string, TrainConfig>;
}

/** Plans every run of `loaded`; `backend` (when given) replaces the runs' config.backend. */
export async function planSweep(loaded: LoadedSweep, options: { backend?: string } = {}): Promise<SweepPlan> {
  const { sweep } = loaded;
  const runs: PlannedRun[] = [];
  const configs = new Map<string, JsonObject>();
  const resolved = new Map<string, TrainConfig>();
  // any engine can build a model for counting (the runs train on their own): wasm always loads
  await initBackend({ backend: 'wasm', log: false });
  const tmp = mkdtempSync(join(tmpdir(), 'peer-sweep-plan-'));
  try {
    for (const budget of sweep.budgets) {
      for (const size of sweep.sizes) {
        const seeds: readonly (number | undefined)[] = size.seeds ?? sweep.seeds ?? [undefined];
        for (const method of Object.keys(sweep.methods)) {
          for (const seed of seeds) {
            const label = budgetLabel(budget);
            const id = runId(label, method, size.name, seed, seeds.length);
            const raw: JsonObject = {
              description: `sweep ${loaded.name}: budget ${label} FLOPs, method ${method}, size ${size.name}${seed === undefined ? '' : `, seed ${seed}`}`,
              ...runConfig(sweep, budget, method, size, seed),
            };
            if (options.backend !== undefined) raw.backend = options.backend;
            configs.set(id, raw);
            // Resolve from a file of the run's name, exactly as the child `train --config` will.
            const file = join(tmp, `${id}.json`);
            writeFileSync(file, `${JSON.stringify(raw, null, 2)}\n`);
            let plannedRun: PlannedRun;
            try {
              const { config } = resolveConfig({ configFile: file });
              resolved.set(id, config);
              const model = buildModel(config);
              try {
                const fpt = model.flopsPerToken();
                const tokens = tokensPerStep(config.data);
                const params = model.paramCounts();
                plannedRun = {
                  id,
                  budget,
                  budgetLabel: label,
                  method,
                  size: size.name,
                  ...(seed === undefined ? {} : { seed }),
                  config: join('configs', `${id}.json`),
                  dir: join('runs', id),
                  log: join('logs', `${id}.log`),
                  configHash: configHash(configToJson(config)),
                  ffw: config.model.ffw.kind,
                  flopsPerToken: fpt,
                  paramsTotal: params.total,
                  paramsActive: params.activePerToken,
                  tokensPerStep: tokens,
                  steps: stepsForBudget(budget, flopsPerStep(fpt, tokens)),
                };
              } finally {
                model.dispose();
              }
            } catch (err) {
              if (err instanceof UsageError) throw new UsageError(`sweep run ${id} (budget ${label}, method ${method}, size ${size.name}): ${err.message}`, err.exitCode);
              throw err;
            }
            runs.push(plannedRun);
          }
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { runs, configs, resolved };
}

/** The config paths where `loaded` differs from the sweep config `existing` was started with. */
export function sweepConfigDiff(existing: SweepRecord, loaded: LoadedSweep): string[] {
  return diffPaths(existing.sweep as unknown as Json, JSON.parse(JSON.stringify(loaded.sweep)) as Json);
}

/**
 * Refuses to continue the sweep in `dir` with a different sweep config than it was started with;
 * `extendable`: the new plan keeps every run of it unchanged, so --extend would accept it.
 */
export function assertSameSweep(dir: string, existing: SweepRecord, loaded: LoadedSweep, extendable = false): void {
  const diff = sweepConfigDiff(existing, loaded);
  if (diff.length > 0) {
    throw new UsageError(
      `--out ${dir} holds a sweep with a different config (differs at ${diff.slice(0, 3).join(', ')}${diff.length > 3 ? ', ...' : ''}); ` +
        `choose another --out, or rerun with the config it was started with${extendable ? ', or add --extend to add runs to it' : ''}`,
    );
  }
}

/**
 * Why `plan` cannot extend the sweep `existing` in `dir`: the first run of its record that the plan
 * drops, or plans with another config than the one it was started with (its run folder's) or planned
 * with (its config file); undefined when the plan keeps every run unchanged.
 */
export function extensionProblem(dir: string, existing: SweepRecord, plan: SweepPlan): string | undefined {
  const planned = new Map(plan.runs.map((run) => [run.id, run]));
  for (const old of existing.runs) {
    const run = planned.get(old.id);
    if (!run) return `run ${old.id} of the sweep is not in the new plan`;
    const started =
      startedRunConfig(join(resolve(dir), old.dir), old.id) ?? resolveConfig({ configFile: join(resolve(dir), old.config) }).config;
    const diff = plannedConfigDiff(dir, run, started, plan.resolved);
    if (diff.length > 0) return `run ${old.id} of the sweep is planned with a different config (differs at ${diff[0]})`;
  }
  return undefined;
}

/** Refuses to extend the sweep `existing` in `dir` with a plan that drops or changes one of its runs. */
export function assertExtends(dir: string, existing: SweepRecord, plan: SweepPlan): void {
  const problem = extensionProblem(dir, existing, plan);
  if (problem !== undefined) {
    throw new UsageError(`--extend: --out ${dir}: ${problem}; an extended sweep must keep every run it has, with the same config`);
  }
}

/**
 * Creates the sweep folder (or checks that an existing one holds this same sweep, or with `extend`
 * one that this plan extends) and writes sweep.json and the runs' config files. Returns the record.
 */
export function writeSweepFolder(dir: string, loaded: LoadedSweep, plan: SweepPlan, existing: SweepRecord | undefined, options: { extend?: boolean } = {}): SweepRecord {
  const abs = resolve(dir);
  if (existing) {
    if (options.extend) assertExtends(dir, existing, plan);
    else assertSameSweep(dir, existing, loaded);
  }
  mkdirSync(join(abs, 'configs'), { recursive: true });
  mkdirSync(join(abs, 'runs'), { recursive: true });
  mkdirSync(join(abs, 'logs'), { recursive: true });
  for (const run of plan.runs) writeFileSync(join(abs, run.config), `${JSON.stringify(plan.configs.get(run.id), null, 2)}\n`);
  const record: SweepRecord = {
    format: SWEEP_FORMAT,
    version: 1,
    name: loaded.name,
    source: loaded.source,
    description: loaded.description,
    createdAt: existing?.createdAt ?? new Date().toISOString(),
    sweep: loaded.sweep,
    runs: plan.runs,
  };
  writeJsonAtomic(join(abs, SWEEP_FILE), record);
  return record;
}

/** `path` relative to the sweep folder, for messages. */
export function sweepRelative(dir: string, path: string): string {
  return relative(resolve(dir), path) || '.';
}

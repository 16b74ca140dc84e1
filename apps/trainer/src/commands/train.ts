// peer-train train: resolve the config, prepare data and model, run the loop, write the run folder.
import { measureMatMulRate, onDevice, settleLoss, watchDeviceLoss, webgpuAdapterInfo, type DeviceLossWatch } from '@peer/backend';
import { Batcher, type TokenFile } from '@peer/data';
import type { TransformerLM } from '@peer/model';
import { join } from 'node:path';
import { configToJson, resolveConfig, type ConfigFlags } from '../config/resolve.js';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { buildModel } from '../run/build-model.js';
import { configHash, readCheckpoint, writeCheckpoint, type TrainerState } from '../run/checkpoint.js';
import { asUsageError, corpusOptions, openCorpus, openSplit } from '../run/open-data.js';
import { startEngine } from '../run/start-engine.js';
import { deviceLossInjection } from '../run/device-loss-injection.js';
import { readRunRecord, type RunRecord } from '../run/run-record.js';
import { RunFolder, writeJsonAtomic, type MetricsRecord } from '../run/run-folder.js';
import { stopWhenParentDies } from '../run/stop-with-parent.js';
import { TensorBoardLog } from '../run/tensorboard-log.js';
import { truncateEvents } from '../tensorboard/event-file.js';
import { formatSummary, summaryUsage, type RunSummary } from '../run/summary.js';
import { withUsage, writeUsageFiles, type UsageResult } from './usage.js';
import { sparseLayers } from '../train/expert-health.js';
import { writeRunReport } from '../report/run-report.js';
import { AdamW } from '../train/adamw.js';
import { evaluate } from '../train/evaluate.js';
import { ExpertHealthMonitor, reportHealth } from '../train/expert-health.js';
import { flopsPerStep, formatCount, stepsForBudget, tokensPerStep } from '../train/flops.js';
import { createProgress } from '../train/progress.js';
import { trainLoop, type LoopPosition } from '../train/train-loop.js';
import { packageVersions } from './doctor.js';
import { engineThreads, threadsText } from '../run/engine-threads.js';

export interface TrainCommandOptions extends ConfigFlags {
  preset?: string;
  config?: string;
  out?: string;
  set?: string[];
  resume?: string;
  /** Write TensorBoard event files to <run>/tb/ (default true). */
  tensorboard?: boolean;
  /** Record expert usage while training and report it at each evaluation (default true; sparse layers only). */
  expertHealth?: boolean;
  /** Threads of the wasm engine (default: config engine.threads, else every core); allowed with --resume. */
  threads?: number;
  /** Where status lines go (default stderr). */
  log?: (line: string) => void;
}

/** Exit code of a run stopped by SIGINT / SIGTERM after saving its checkpoint (shell convention). */
export const INTERRUPTED_EXIT_CODE = 130;

function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Flags that choose a config; a resumed run keeps its own and refuses them. */
const CONFIG_FLAGS: [keyof TrainCommandOptions, string][] = [
  ['preset', '--preset'],
  ['config', '--config'],
  ['ffw', '--ffw'],
  ['data', '--data'],
  ['textField', '--text-field'],
  ['tokenizer', '--tokenizer'],
  ['steps', '--steps'],
  ['flops', '--flops'],
  ['seed', '--seed'],
  ['out', '--out'],
];

/** Runs `peer-train train`; returns the exit code (0, or 130 after an interrupt). */
export async function train(options: TrainCommandOptions): Promise<number> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  // 1. The config: a new run's from preset/file/flags, a resumed run's from its config.json.
  let run: RunFolder | undefined;
  let record: RunRecord | undefined;
  let config: TrainConfig;
  let name: string;
  let source: string;
  let outDir: string;
  if (options.resume !== undefined) {
    const given = CONFIG_FLAGS.filter(([key]) => options[key] !== undefined).map(([, flag]) => flag);
    if (options.set?.length) given.push('--set');
    if (given.length > 0) {
      throw new UsageError(`--resume continues a run with the config in its config.json; drop ${given.join(', ')}`);
    }
    run = RunFolder.open(options.resume, '--resume');
    record = readRunRecord(run);
    ({ config, name, source } = record);
    outDir = run.dir;
  } else {
    const resolved = resolveConfig({
      preset: options.preset,
      configFile: options.config,
      flags: { ffw: options.ffw, data: options.data, textField: options.textField, tokenizer: options.tokenizer, steps: options.steps, flops: options.flops, seed: options.seed, backend: options.backend },
      sets: options.set,
    });
    ({ config, name, source } = resolved);
    outDir = options.out ?? join('runs', `${name}-${timestamp()}`);
    RunFolder.checkNew(outDir);
  }
  const hash = configHash(configToJson(config));

  // 2. Corpus, engine, model, data. Nothing is written before all of them are known to work, and
  // the cheap checks come first.
  const corpus = await openCorpus(config.data.corpus, corpusOptions(config.data));
  const backend = await startEngine(options.backend ?? config.backend, engineThreads(options.threads, config.engine?.threads));
  const deviceLoss = watchDeviceLoss();
  const files: TokenFile[] = [];
  let unlock: (() => void) | undefined;
  let model: TransformerLM | undefined;
  let optimizer: AdamW | undefined;
  let tensorboard: TensorBoardLog | undefined;
  let health: ExpertHealthMonitor | undefined;
  try {
    model = buildModel(config);
    const tokens = tokensPerStep(config.data);
    const fpt = model.flopsPerToken();
    const stepFlops = flopsPerStep(fpt, tokens);
    const totalSteps = config.train.steps ?? stepsForBudget(config.train.flops!, stepFlops);
    const params = model.paramCounts();
    const trainData = await openSplit(config.data, 'train', { corpus, log });
    files.push(trainData.file);
    const valData = await openSplit(config.data, 'validation', { corpus, log });
    files.push(valData.file);
    const batcherOptions = { batchSize: config.data.batchSize, seqLen: config.data.seqLen, seed: config.train.seed };
    let batcher: Batcher;
    try {
      batcher = new Batcher(trainData.file, batcherOptions);
    } catch (err) {
      throw asUsageError(err, `data ${config.data.corpus}`);
    }
    checkFitsDevice(model);
    optimizer = new AdamW(model.trainableVariables(), config.optim);
    log(`[peer] backend: ${backend.backend} via ${backend.provider}${threadsText(backend)}`);
    log(
      `model: ${name} (${source}), ffw ${config.model.ffw.kind}, ${formatCount(params.total)} parameters, ` +
        `${formatCount(params.activePerToken)} active/token, ${formatCount(fpt)} FLOPs/token; ${totalSteps} steps of ${tokens} tokens`,
    );

    // 3. The run folder: a new one, or the resumed one rewound to its checkpoint.
    let start: LoopPosition = { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 };
    const resuming = run !== undefined;
    if (run && record) {
      unlock = run.lock();
      if (run.hasCheckpoint()) {
        const ckpt = readCheckpoint(run.checkpointDir, hash);
        try {
          model.loadStateEntries(ckpt.get);
          optimizer.loadStateEntries(ckpt.state.step, ckpt.get);
        } catch (err) {
          if (err instanceof UsageError) throw err;
          throw new UsageError(`the checkpoint in ${run.checkpointDir} does not fit this run's model: ${(err as Error).message}`);
        }
        try {
          batcher = Batcher.resume(trainData.file, batcherOptions, ckpt.state.batcher);
        } catch (err) {
          throw asUsageError(err, `the checkpoint in ${run.checkpointDir}`);
        }
        const s = ckpt.state;
        start = { step: s.step, tokens: s.tokens, trainSeconds: s.trainSeconds, wallSeconds: s.wallSeconds };
        log(`resuming ${run.dir} at step ${s.step} of ${totalSteps}`);
      } else {
        log(`resuming ${run.dir}: no checkpoint yet, starting at step 0`);
      }
      run.truncateMetrics(start.step);
      run.removeSummary();
    } else {
      run = RunFolder.create(outDir);
      unlock = run.lock();
      record = {
        name,
        source,
        createdAt: new Date().toISOString(),
        config,
        versions: packageVersions(),
        backend: { requested: options.backend ?? config.backend, name: backend.backend, provider: backend.provider },
        derived: { steps: totalSteps, tokensPerStep: tokens, flopsPerToken: fpt, flopsPerStep: stepFlops, params },
        node: process.version,
      };
      writeJsonAtomic(run.path('config'), record);
      log(`run folder: ${run.dir}`);
    }

    // 4. Train.
    const rate = await measureMatMulRate(512, 5);
    const peak = rate.gflops > 0 ? rate.gflops * 1e9 : undefined;
    const evalOptions = (maxBatches: number) => ({
      batchSize: config.data.batchSize,
      seqLen: config.data.seqLen,
      maxBatches,
      tokenizer: valData.tokenizer,
      vocabSize: config.model.vocabSize,
    });
    const m = model;
    const opt = optimizer;
    const folder = run;
    // TensorBoard gets the same records as metrics.jsonl; a resumed run drops the redone steps from both.
    if (resuming) truncateEvents(folder.path('tensorboard'), start.step);
    if (options.tensorboard ?? true) tensorboard = new TensorBoardLog(folder.path('tensorboard'));
    if ((options.expertHealth ?? true) && onDevice()) {
      // Recording routing reads every forward pass's experts back synchronously, which a GPU engine
      // cannot do; `peer-train usage` measures the same statistics from a checkpoint on any engine.
      log(`expert health: off on ${backend.backend} (it reads the routing of every step; run \`peer-train usage --run DIR\` on a checkpoint instead)`);
    } else if (options.expertHealth ?? true) health = new ExpertHealthMonitor(m);
    const tb = tensorboard;
    const writeMetrics = (r: MetricsRecord) => {
      folder.appendMetrics(r);
      tb?.write(r);
    };
    let stopSignal: string | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopSignal) process.exit(INTERRUPTED_EXIT_CODE); // a second Ctrl-C: quit now; the last checkpoint is intact
      stopSignal = signal;
      progress.log(`${signal}: finishing this step and saving a checkpoint (press Ctrl-C again to quit at once)`);
    };
    const progress = createProgress({ totalSteps, startStep: start.step });
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    stopWhenParentDies();
    let outcome;
    let lastCheckpoint = start.step;
    // stopRequested is polled once after every step
    let stepsDone = start.step;
    const injectDeviceLoss = deviceLossInjection();
    try {
      outcome = await trainLoop({
        model: m,
        optimizer: opt,
        batcher,
        config,
        totalSteps,
        start,
        flopsPerStep: stepFlops,
        peakFlopsPerSecond: peak,
        progress,
        evaluate: async (maxBatches) => evaluate(m, valData.file, evalOptions(maxBatches)),
        checkpoint: async (position) => {
          const state: TrainerState = { version: 1, ...position, batcher: batcher.state(), configHash: hash };
          // Everything is read from the engine before the first byte is written: a device lost
          // meanwhile leaves the previous checkpoint untouched.
          await m.prepareState();
          await opt.prepareState();
          writeCheckpoint(folder.checkpointDir, [...m.stateEntries(), ...opt.stateEntries()], state);
          lastCheckpoint = position.step;
        },
        writeMetrics,
        stopRequested: () => {
          injectDeviceLoss(++stepsDone);
          return stopSignal !== undefined;
        },
        health,
      });
    } catch (err) {
      throw await asDeviceLoss(err, deviceLoss, folder, lastCheckpoint);
    } finally {
      progress.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }

    if (outcome.kind === 'interrupted') {
      log(`stopped at step ${outcome.position.step} of ${totalSteps}; checkpoint saved. Continue with: peer-train train --resume ${folder.dir}`);
      return INTERRUPTED_EXIT_CODE;
    }
    if (outcome.kind === 'non-finite') {
      const kept = folder.hasCheckpoint() ? `the last good checkpoint in ${folder.checkpointDir} is kept` : 'no checkpoint was saved yet';
      throw new UsageError(
        `non-finite ${outcome.what} (${outcome.value}) at step ${outcome.position.step + 1}: training stopped, nothing was updated; ${kept} ` +
          `(try a lower optim.lr or optim.gradClip)`,
        1,
      );
    }

    // 5. Final evaluation (with the last expert-health window) and summary.
    const p = outcome.position;
    const lastWindow = health?.collect(p.step);
    if (lastWindow) reportHealth(lastWindow, p.tokens, writeMetrics, log);
    // The final evaluation also records the sparse layers' expert usage (Table 2 of the paper: the
    // final weights over a held-out pass), so that no second pass is needed; not on a GPU engine,
    // where recording the routing would need synchronous reads.
    const recordUsage = !onDevice() && sparseLayers(m).length > 0;
    let final;
    let usage: UsageResult | undefined;
    try {
      const finalPass = () => evaluate(m, valData.file, evalOptions(config.train.finalEvalBatches));
      if (recordUsage) {
        const { result, reports } = await withUsage(m, finalPass);
        final = result;
        usage = await writeUsageFiles({ dir: folder.dir, config, model: m, step: p.step }, reports, {
          corpus: config.data.corpus,
          split: 'validation',
          tokens: result.tokens,
          batches: result.batches,
          loss: result.loss,
        });
      } else final = await finalPass();
    } catch (err) {
      throw await asDeviceLoss(err, deviceLoss, folder, p.step);
    }
    writeMetrics({ kind: 'eval', step: p.step, tokens: p.tokens, val_loss: final.loss, val_ppl: final.perplexity, val_bpb: final.bitsPerByte });
    tensorboard?.close();
    const tokensPerSecond = p.trainSeconds > 0 ? p.tokens / p.trainSeconds : 0;
    const summary: RunSummary = {
      run: folder.dir,
      name,
      ffw: config.model.ffw.kind,
      params_total: params.total,
      params_active_per_token: params.activePerToken,
      params_embedding: params.embedding,
      flops_per_token: fpt,
      flops: flopsPerStep(fpt, p.tokens),
      tokens: p.tokens,
      steps: p.step,
      val_loss: final.loss,
      val_ppl: final.perplexity,
      val_bpb: final.bitsPerByte,
      val_tokens: final.tokens,
      wall_seconds: p.wallSeconds,
      tokens_per_s: tokensPerSecond,
      mfu: peak && p.trainSeconds > 0 ? (3 * fpt * tokensPerSecond) / peak : null,
      backend: backend.backend,
      seed: config.train.seed,
      ...(usage ? { usage: usage.layers.map(summaryUsage) } : {}),
      finished_at: new Date().toISOString(),
    };
    writeJsonAtomic(folder.path('summary'), summary);
    process.stdout.write(`${formatSummary(summary)}\n`);
    // Usage is measured on the model still in memory rather than reloading the checkpoint; not on a
    // GPU engine, where recording the routing would need synchronous reads.
    const report = await writeRunReport(folder.dir, onDevice() ? { computeUsage: false } : { model });
    process.stdout.write(`report: ${report.htmlPath}\n`);
    return 0;
  } finally {
    health?.stop();
    tensorboard?.close();
    optimizer?.dispose();
    model?.dispose();
    for (const f of files) f.close();
    unlock?.();
  }
}

/**
 * On a device engine, refuses a model with a tensor larger than one storage binding of the adapter
 * (the engine would fail later with an opaque message). Sparse tables shard themselves; this sees
 * the dense variables.
 */
function checkFitsDevice(model: TransformerLM): void {
  const info = webgpuAdapterInfo();
  if (!onDevice() || !info || info.maxStorageBufferBindingSize <= 0) return;
  for (const v of model.trainableVariables()) {
    const bytes = v.size * 4;
    if (bytes > info.maxStorageBufferBindingSize) {
      throw new UsageError(
        `variable '${v.name}' [${v.shape.join(', ')}] needs ${bytes} bytes, more than the GPU's maxStorageBufferBindingSize ` +
          `(${info.maxStorageBufferBindingSize} bytes): make the model smaller or train with --backend wasm`,
      );
    }
  }
}

/**
 * A failure while the device was lost becomes one line, exit 1, like a crash: the checkpoint written
 * before is complete (writes are atomic, and a checkpoint reads everything before writing) and
 * `--resume` continues from it, on any engine. Other errors pass through.
 */
async function asDeviceLoss(err: unknown, watch: DeviceLossWatch, folder: RunFolder, checkpointStep: number): Promise<unknown> {
  const reason = await settleLoss(watch);
  if (reason === undefined) return err;
  const kept = folder.hasCheckpoint()
    ? `the checkpoint of step ${checkpointStep} in ${folder.checkpointDir} is kept; continue with: peer-train train --resume ${folder.dir} (on any --backend)`
    : `no checkpoint was saved yet; start again`;
  return new UsageError(`the GPU device was lost during training (${reason}): ${kept}`, 1);
}

// The experiment commands of peer-train: usage, sweep, report, bench (layer, train, all) and layer-io.
// Declared here and added to the program by cli.ts; each command's work lives in src/commands/.
// These commands print a bad flag value as one line (no help text after it): exit code 2.
import { Option, type Command } from 'commander';
import { BACKEND_NAMES } from '@peer/backend';
import { benchAllCommand, benchLayerCommand, benchTrainCommand, BENCH_LAYERS } from './commands/bench.js';
import { layerIoCommand } from './commands/layer-io.js';
import { reportCommand } from './commands/report.js';
import { sweepCommand } from './commands/sweep.js';
import { addWorkerCommand, sweepStatusAction } from './queue-commands.js';
import { usageCommand } from './commands/usage.js';
import { INTERRUPTED_EXIT_CODE } from './commands/train.js';
import { collect, intArg, threadsOption } from './cli-args.js';


const backendOption = () => new Option('--backend <name>', 'tfjs engine (default: the run\'s, or auto)').choices(BACKEND_NAMES as string[]);

/** `1,2,4`: thread counts, each a whole number >= 1. */
function threadList(value: string): number[] {
  const parse = intArg(1);
  return value.split(',').map((v) => parse(v.trim()));
}

/** A subcommand that reports a bad flag in one line. */
function command(parent: Command, name: string): Command {
  return parent.command(name).showHelpAfterError(false);
}

export function addExperimentCommands(program: Command): void {
  command(program, 'usage')
    .description("expert usage of a run's sparse layers (the paper's Table 2): usage %, unevenness (KL to uniform), top-1% share, histogram plot")
    .requiredOption('--run <dir>', 'run folder')
    .option('--data <name|path>', "another corpus (default: the run's)")
    .addOption(new Option('--split <name>', 'split to evaluate').choices(['train', 'validation', 'test']).default('validation'))
    .option('--batches <n>', 'evenly spaced batches of the split (default: the whole split)', intArg(1))
    .option('--batch-size <n>', "rows per batch (default: the run's)", intArg(1))
    .option('--json', 'print one JSON object')
    .addOption(backendOption())
    .addOption(threadsOption())
    .addHelpText('after', '\nWrites usage.json, usage-weights.safetensors (per-expert router weight and hits) and usage.svg/.png into the run folder.')
    .action(async (opts) => {
      await usageCommand(opts);
    });

  command(program, 'sweep')
    .description('isoFLOP experiment or ablation: train and evaluate every (budget, method, size, seed) of a sweep config; write summary.csv, summary.md, the plot (isoflop, experts, active or query-norm .svg/.png) and report.html')
    .addOption(new Option('--preset <name>', 'a sweep preset from apps/trainer/presets (default: quick-sweep)').conflicts('config'))
    .option('--config <file>', 'a sweep config file (see the README)')
    .option('--out <dir>', 'sweep folder (default: runs/sweep-<name>); rerun with the same folder to continue an interrupted sweep')
    .option('--jobs <n>', 'runs trained at the same time (the cores are divided between them: --threads defaults to cores / jobs)', intArg(1), 1)
    .option('--dry-run', 'print the planned runs (parameters, FLOPs, steps) and stop')
    .option('--extend', "add runs to the sweep in --out: accept a different sweep config whose plan keeps every run of the folder's sweep with the same config (finished runs are skipped, the summary covers all runs)")
    .option('--queue <url>', 'redis://[user:pass@]host:port[/db]: queue the runs for `peer-train worker`s (BullMQ) instead of training them here')
    .option('--status', 'with --queue: show the state of the sweeps on the queue (of --out / --preset / --config only, when given) and stop')
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (opts) => {
      if (opts.status) return sweepStatusAction(opts);
      const result = await sweepCommand(opts);
      if (result.interrupted) process.exit(INTERRUPTED_EXIT_CODE);
    });

  addWorkerCommand(command(program, 'worker'));

  command(program, 'report')
    .description('report.html (self-contained) of a run folder (loss, learning rate, throughput, expert usage, config, summary) or of a sweep folder (tables and the plot of its sweep), with SVG/PNG plots next to it')
    .argument('<dir>', 'run or sweep folder')
    .option('--no-usage', 'do not measure expert usage (use usage.json when present)')
    .option('--usage-batches <n>', "batches of the usage pass (default: the run's train.evalBatches)", intArg(0))
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (dir: string, opts: { usage: boolean; usageBatches?: number; backend?: string; threads?: number }) => {
      await reportCommand(dir, opts);
    });

  const bench = command(program, 'bench').description('speed benchmarks: one layer\'s training step, end-to-end training, or all of them');

  command(bench, 'layer')
    .description('time a full training step of one feed-forward layer (forward, backward, dense Adam, sparse table update); flags not given keep the layer\'s defaults')
    .requiredOption('--layer <kind>', `${BENCH_LAYERS.join(' | ')}`)
    .option('--experts <n>', 'PEER: experts N (a square); moe, moe-ec: experts; pkm: memories', intArg(1))
    .option('--dim <d>', 'model width', intArg(2), 256)
    .option('--heads <h>', 'peer, pkm: retrieval heads', intArg(1))
    .option('--topk <k>', 'peer, pkm: top-k per head; moe: experts per token', intArg(1))
    .option('--dim-key <dk>', 'peer, pkm: sub-key width', intArg(1))
    .option('--tokens <n>', 'tokens per step', intArg(2), 512)
    .option('--steps <n>', 'timed steps (the median is reported)', intArg(1), 5)
    .option('--warmup <n>', 'untimed steps first', intArg(0), 1)
    .option('--set <key=value>', 'any other field of the layer config (repeatable)', collect)
    .option('--json', 'print one JSON object')
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (opts) => {
      await benchLayerCommand(opts);
    });

  command(bench, 'train')
    .description('end-to-end training benchmark of the dense and PEER presets: tokens/s, MFU, PEER/dense tokens/s ratio')
    .option('--presets <names>', 'comma-separated presets', (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean), ['dense', 'peer'])
    .option('--steps <n>', 'training steps per preset (the first 5 are warm-up)', intArg(10), 30)
    .option('--compare-threads <list>', 'train each preset at each of these thread counts, e.g. 1,2 (alternating between rounds; medians)', threadList)
    .option('--rounds <n>', 'rounds of --compare-threads', intArg(1), 1)
    .option('--no-pytorch', 'do not train the dense model in PyTorch for the ratio')
    .option('--json', 'print one JSON object')
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (opts) => {
      await benchTrainCommand(opts);
    });

  command(bench, 'all')
    .description('every layer benchmark (PEER at 128^2 and 1024^2, ffw, moe, moe-ec, pkm at d = 256, 512 tokens) and the training benchmark; what `pnpm bench` runs')
    .option('--skip-large', 'skip the 1024^2-table layers (several GiB of memory)')
    .option('--train-steps <n>', 'training steps per preset', intArg(10), 30)
    .option('--out <file>', 'also write the results as JSON to this file')
    .option('--json', 'print one JSON object')
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (opts) => {
      await benchAllCommand(opts);
    });

  command(program, 'layer-io')
    .description('run one PEER layer (PEER-pytorch safetensors weights) forward on x, and backward with dy: PyTorch interop checks')
    .requiredOption('--weights <file>', 'layer weights, PEER-pytorch names and layout (.safetensors)')
    .requiredOption('--input <file>', "input tensor 'x' [batch, seq, d] or [tokens, d]")
    .requiredOption('--output <file>', "where to write 'y'")
    .option('--grad-output <file>', "output gradient 'dy' (runs backward)")
    .option('--grads-out <file>', "where backward writes 'dx' and every weight's gradient under its name")
    .option('--set <key=value>', 'layer settings the weights cannot tell, e.g. topK=16, activation=relu, training=false (repeatable)', collect)
    .option('--json', 'print one JSON object')
    .addOption(backendOption())
    .addOption(threadsOption())
    .action(async (opts) => {
      await layerIoCommand(opts);
    });
}

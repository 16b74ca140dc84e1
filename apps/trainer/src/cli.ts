// peer-train: the command line of the @peer project. Each command lives in src/commands/; this file
// only declares flags and maps errors to exit codes (2: bad input, 1: runtime failure).
import { Command, CommanderError, Option } from 'commander';
import { BACKEND_NAMES } from '@peer/backend';
import { FEED_FORWARD_KINDS } from '@peer/feed-forward';
import { presetDescription, presetNames } from './config/presets.js';
import { doctor } from './commands/doctor.js';
import { evalCommand } from './commands/eval.js';
import { generateCommand } from './commands/generate.js';
import { train } from './commands/train.js';
import { collect, intArg, numberArg, threadsOption } from './cli-args.js';
import { UsageError } from './errors.js';
import { addExperimentCommands } from './experiment-commands.js';

let exitCode = 0;

const program = new Command('peer-train')
  .description('Train, evaluate and compare PEER language models')
  .option('--verbose', 'print stack traces of errors')
  .exitOverride();

const backendOption = (fallback?: string) => {
  const o = new Option('--backend <name>', 'tfjs engine').choices(BACKEND_NAMES as string[]);
  return fallback ? o.default(fallback) : o;
};

program
  .command('train')
  .description('train a language model; writes config.json, metrics.jsonl, tb/ (TensorBoard), checkpoint/ and summary.json to the run folder')
  .addOption(new Option('--preset <name>', 'a preset from apps/trainer/presets (default: default)').conflicts('config'))
  .option('--config <file>', 'a config JSON file (a partial config, or a run folder\'s config.json)')
  .addOption(new Option('--ffw <kind>', 'feed-forward layer of the sparse blocks').choices(FEED_FORWARD_KINDS as unknown as string[]))
  .option('--data <name|path|glob>', "corpus: sotu, moby-dick, a .txt/.jsonl/.parquet file (.gz too), a folder, or a quoted glob of shards ('c4/en/c4-train.0000*-of-01024.json.gz')")
  .option('--text-field <name>', 'JSONL field / Parquet column holding the text (default: text)')
  .option('--tokenizer <name>', 'byte, gpt2, p50k, cl100k, o200k (also sets model.vocabSize)')
  .addOption(new Option('--steps <n>', 'optimizer steps').argParser(intArg(1)).conflicts('flops'))
  .addOption(new Option('--flops <F>', 'compute budget: floor(F / FLOPs per step) steps').argParser(numberArg((n) => n > 0, 'a positive number')))
  .option('--seed <n>', 'seed of initialization, batch order and dropout', intArg(0))
  .option('--out <dir>', 'run folder (default runs/<preset>-<timestamp>); must be new or empty')
  .addOption(backendOption())
  .addOption(threadsOption())
  .option('--set <key=value>', 'override any config field, e.g. --set optim.lr=3e-4 (repeatable)', collect)
  .option('--resume <dir>', 'continue the run in <dir> from its last checkpoint')
  .option('--no-tensorboard', 'do not write TensorBoard event files to <run>/tb/')
  .option('--no-expert-health', 'do not record expert usage while training (sparse layers)')
  .addHelpText('after', () => `\nPresets:\n${presetNames().map((n) => `  ${n.padEnd(12)} ${presetDescription(n)}`).join('\n')}`)
  .action(async (opts) => {
    exitCode = await train(opts);
  });

program
  .command('eval')
  .description("loss, perplexity and bits-per-byte of a run's checkpoint")
  .requiredOption('--run <dir>', 'run folder')
  .option('--data <name|path|glob>', "another corpus (default: the run's)")
  .option('--text-field <name>', "JSONL field / Parquet column of --data (default: the run's)")
  .addOption(
    new Option('--split <name>', "split to evaluate (default: validation of the run's corpus, all of another corpus)").choices([
      'train',
      'validation',
      'test',
      'all',
    ]),
  )
  .option('--batches <n>', 'evaluate this many evenly spaced batches (default: the whole split)', intArg(1))
  .option('--batch-size <n>', "rows per batch (default: the run's)", intArg(1))
  .option('--json', 'print one JSON object')
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (opts) => {
    await evalCommand(opts);
  });

program
  .command('generate')
  .description("continue a prompt with a run's checkpoint")
  .requiredOption('--run <dir>', 'run folder')
  .requiredOption('--prompt <text>', 'text to continue')
  .option('--max-tokens <n>', 'tokens to generate', intArg(1), 200)
  .option('--temperature <t>', '0 = greedy', numberArg((n) => n >= 0, 'a number >= 0'), 0.8)
  .option('--top-k <k>', 'sample from the k most likely tokens only', intArg(1))
  .option('--seed <n>', 'sampling seed', intArg(0), 0)
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (opts) => {
    await generateCommand(opts);
  });

program
  .command('doctor')
  .description('print versions, the tfjs engine chosen (and why others were skipped), its threads and the matMul rate at 1 and N threads')
  .addOption(backendOption('auto'))
  .addOption(threadsOption())
  .action(async (opts: { backend: string; threads?: number }) => doctor(opts));

addExperimentCommands(program);

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (help, version, or a usage error)
      return err.exitCode === 0 ? 0 : 2;
    }
    const verbose = program.opts<{ verbose?: boolean }>().verbose || argv.includes('--verbose');
    if (verbose && err instanceof Error) console.error(err.stack);
    else console.error(`peer-train: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof UsageError ? err.exitCode : 1;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});

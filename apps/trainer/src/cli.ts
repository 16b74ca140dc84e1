// peer-train: the command line of the @peer project. Each command lives in src/commands/.
import { Command, CommanderError, Option } from 'commander';
import { BACKEND_NAMES } from '@peer/backend';
import { doctor } from './commands/doctor.js';
import { UsageError } from './errors.js';

const program = new Command('peer-train')
  .description('Train, evaluate and compare PEER language models')
  .option('--verbose', 'print stack traces of errors')
  .showHelpAfterError()
  .exitOverride();

const backendOption = () => new Option('--backend <name>', 'tfjs engine').choices(BACKEND_NAMES as string[]).default('auto');

program
  .command('doctor')
  .description('print versions, the tfjs engine chosen (and why others were skipped) and a matMul timing')
  .addOption(backendOption())
  .action(async (opts: { backend: string }) => doctor(opts));

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
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

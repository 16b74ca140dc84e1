// peer-train layer-io: one PEER layer forward (and backward) on tensors from safetensors files, for
// checking this implementation against PEER-pytorch. A thin wrapper around @peer/layer's runPeerOnFiles:
// weights in PEER-pytorch's names and layout; x in, y out; with --grad-output (dy), the input
// gradient dx and every weight's gradient under the weight's own name go to --grads-out.
import { existsSync, statSync } from 'node:fs';
import { parseLayerOverrides, runPeerOnFiles, type PeerOnFilesResult } from '@peer/layer';
import { UsageError } from '../errors.js';
import { startBackend } from './bench.js';

export interface LayerIoCommandOptions {
  weights: string;
  input: string;
  output: string;
  gradOutput?: string;
  gradsOut?: string;
  /** Layer settings the weights cannot tell (`topK=16`, `activation=relu`, `training=false`, ...). */
  set?: string[];
  backend?: string;
  /** Threads of the wasm engine (default every core). */
  threads?: number;
  json?: boolean;
}

function checkFile(flag: string, path: string): void {
  if (!existsSync(path)) throw new UsageError(`${flag} ${path}: no such file`);
  if (!statSync(path).isFile()) throw new UsageError(`${flag} ${path}: not a file`);
}

export async function layerIoCommand(options: LayerIoCommandOptions): Promise<PeerOnFilesResult> {
  checkFile('--weights', options.weights);
  checkFile('--input', options.input);
  if (options.gradOutput !== undefined) checkFile('--grad-output', options.gradOutput);
  if (options.gradOutput !== undefined && options.gradsOut === undefined) throw new UsageError('--grad-output needs --grads-out (where to write dx and the weight gradients)');
  if (options.gradsOut !== undefined && options.gradOutput === undefined) throw new UsageError('--grads-out needs --grad-output (the output gradient dy to run backward with)');
  let settings;
  try {
    settings = parseLayerOverrides(options.set ?? []);
  } catch (err) {
    throw new UsageError(`--set: ${(err as Error).message}`);
  }
  const backend = await startBackend(options.backend, options.threads);
  let result: PeerOnFilesResult;
  try {
    result = runPeerOnFiles({
      weights: options.weights,
      input: options.input,
      output: options.output,
      gradOutput: options.gradOutput,
      gradsOut: options.gradsOut,
      overrides: settings.overrides,
      training: settings.training,
    });
  } catch (err) {
    // the files and settings are the user's: a wrong name, shape or dtype in them is bad input
    if (err instanceof Error) throw new UsageError(`layer-io: ${err.message}`);
    throw err;
  }
  if (options.json) process.stdout.write(`${JSON.stringify({ ...result, backend })}\n`);
  else {
    const c = result.config;
    process.stdout.write(
      `PEER layer (N = ${c.numExperts}, d = ${c.dim}, heads ${c.heads}, top-${c.topK}, ${result.training ? 'batch' : 'running'} norm statistics, backend ${backend}): ` +
        `y [${result.shape.join(', ')}] -> ${options.output}` +
        (result.gradients.length ? `; ${result.gradients.join(', ')} -> ${options.gradsOut}` : '') +
        '\n',
    );
  }
  return result;
}

// Starting the tfjs engine a command asked for, with the exit codes of the CLI: an engine that is
// not there is a runtime failure (exit 1), except an explicit `--backend webgpu` without a usable
// GPU adapter, which is the user's request not fitting the machine (exit 2, like other bad input).
import { BackendUnavailableError, initBackend, type BackendChoice, type BackendRequest } from '@peer/backend';
import { UsageError } from '../errors.js';

/** `threads`: the wasm engine's thread count (other engines ignore it). */
export async function startEngine(requested: string | undefined, threads?: number): Promise<BackendChoice> {
  const backend = (requested ?? 'auto') as BackendRequest;
  try {
    return await initBackend({ backend, ...(threads === undefined ? {} : { threads }), log: false });
  } catch (err) {
    if (err instanceof BackendUnavailableError) throw new UsageError(err.message, backend === 'webgpu' ? 2 : 1);
    throw err;
  }
}

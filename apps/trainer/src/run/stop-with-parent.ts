// A training started by a queue worker gets an IPC channel to it (and no other use of it): when the
// worker dies (SIGKILL, a lost machine's power), the channel closes and the training stops the way
// Ctrl-C stops it (finish the step, save a checkpoint, exit), because the worker's job is about to
// be retried by another worker, which continues from that checkpoint. Without the variable below (a
// user's shell, the local sweep) nothing changes.

/** Set (to 1) in the environment of a training that must stop when its parent dies. */
export const STOP_WITH_PARENT_ENV = 'PEER_TRAIN_STOP_WITH_PARENT';

/** Call once the trainer handles SIGTERM (before that, the default action ends the process). */
export function stopWhenParentDies(): void {
  if (process.env[STOP_WITH_PARENT_ENV] !== '1') return;
  // once the training loop is over its SIGTERM handler is gone, and the default action would kill the
  // process mid-report with the run's lock still held: then it just finishes (the summary is written)
  const stop = () => {
    if (process.listenerCount('SIGTERM') > 0) process.kill(process.pid, 'SIGTERM');
  };
  // Node drops the channel once it closes: the parent died while the run was being set up
  if (!process.channel || !process.connected) {
    stop();
    return;
  }
  // the channel must not keep a finished training alive
  process.channel.unref();
  process.once('disconnect', stop);
}

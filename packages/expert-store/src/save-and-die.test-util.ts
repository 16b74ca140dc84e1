// Test helper run as a child process: saves a checkpoint and kills itself (SIGKILL, no cleanup)
// right after the save reaches a given stage, the way a crash or an OOM kill would.
// Usage: node --import tsx save-and-die.test-util.ts <dir> <stage> <seed>
import { saveCheckpoint, type SaveStage } from './checkpoint.js';
import { checkpointArrays } from './checkpoint-fixture.test-util.js';

const [dir, stage, seed] = process.argv.slice(2) as [string, SaveStage, string];
saveCheckpoint(dir, checkpointArrays(Number(seed)), {
  shardBytes: 64 * 1024,
  metadata: { writer: 'child' },
  onProgress: (p) => {
    if (p.stage === stage) process.kill(process.pid, 'SIGKILL');
  },
});

import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { measurePytorchDense, probeTorch, pytorchDenseScript } from './pytorch-bench.js';

const dir = mkdtempSync(join(tmpdir(), 'peer-fake-python-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An executable standing in for python3: `body` is a bash script. */
function fakePython(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/usr/bin/env bash\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('the PyTorch side of bench train', () => {
  it('the script it runs is in the package', () => {
    expect(existsSync(pytorchDenseScript())).toBe(true);
  });

  it('says why there is no measurement: no python, or no torch', async () => {
    expect(probeTorch(join(dir, 'no-such-python'))).toEqual({ reason: `${join(dir, 'no-such-python')} is not installed` });
    const noTorch = fakePython('no-torch', `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`);
    expect(await measurePytorchDense([1, 2], 10, noTorch)).toEqual({
      available: false,
      reason: `${noTorch} cannot import torch (ModuleNotFoundError: No module named 'torch')`,
    });
  });

  it('runs the script at each thread count and keeps the best', async () => {
    // Reports 1000 tokens/s at 1 thread and 1700 at 2; the version probe prints 2.5.1.
    const python = fakePython(
      'fast-torch',
      `if [ "$1" = "-c" ]; then echo 2.5.1; exit 0; fi
       t=$3; echo "warming up"; echo "{\\"threads\\": $t, \\"tokens_per_second\\": $(( t == 1 ? 1000 : 1700 )), \\"steps\\": $5}"`,
    );
    expect(await measurePytorchDense([1, 2], 12, python)).toEqual({
      available: true,
      version: '2.5.1',
      tokensPerSecondByThreads: { '1': 1000, '2': 1700 },
      best: 1700,
      bestThreads: 2,
    });
  });

  it('a failing script is a reason, not a number', async () => {
    const python = fakePython('broken-torch', `if [ "$1" = "-c" ]; then echo 2.5.1; exit 0; fi\necho "RuntimeError: out of memory" >&2; exit 3`);
    expect(await measurePytorchDense([1], 10, python)).toEqual({
      available: false,
      reason: 'the PyTorch script failed with 1 threads (RuntimeError: out of memory)',
    });
  });
});

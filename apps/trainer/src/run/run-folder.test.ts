import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { tempDir } from '../cli-process.test-util.js';
import { RunFolder, writeJsonAtomic } from './run-folder.js';

describe('RunFolder', () => {
  it('creates new runs only in absent or empty folders', () => {
    const root = tempDir();
    const run = RunFolder.create(join(root, 'a'));
    expect(existsSync(run.dir)).toBe(true);
    mkdirSync(join(root, 'empty'));
    expect(RunFolder.create(join(root, 'empty')).dir).toBe(join(root, 'empty'));
    writeJsonAtomic(run.path('config'), { config: {} });
    expect(() => RunFolder.create(run.dir)).toThrow(UsageError);
    expect(() => RunFolder.create(run.dir)).toThrow(`--out ${run.dir} already holds a run; continue it with --resume ${run.dir} or choose another --out`);
    writeFileSync(join(root, 'file'), 'x');
    expect(() => RunFolder.checkNew(join(root, 'file'))).toThrow('exists and is not a folder');
    expect(() => RunFolder.open(join(root, 'empty'), '--run')).toThrow(`--run ${join(root, 'empty')} is not a run folder (no config.json)`);
  });

  it('reads metrics past a torn last line and rewinds them to a step', () => {
    const run = RunFolder.create(join(tempDir(), 'r'));
    for (const step of [1, 2, 3, 4]) run.appendMetrics({ kind: 'train', step, loss: 5 - step });
    run.appendMetrics({ kind: 'eval', step: 4, val_loss: 1.5 });
    appendFileSync(run.path('metrics'), '{"kind":"train","ste'); // a process killed mid-write
    expect(run.readMetrics().map((m) => m.step)).toEqual([1, 2, 3, 4, 4]);
    run.truncateMetrics(2);
    expect(readFileSync(run.path('metrics'), 'utf8')).toBe('{"kind":"train","step":1,"loss":4}\n{"kind":"train","step":2,"loss":3}\n');
  });

  it('locks a run against a second trainer and takes over a dead process\'s lock', () => {
    const run = RunFolder.create(join(tempDir(), 'l'));
    const release = run.lock();
    expect(readFileSync(run.path('lock'), 'utf8').trim()).toBe(String(process.pid));
    // the parent of this process is alive: its lock is respected
    writeFileSync(run.path('lock'), `${process.ppid}\n`);
    expect(() => run.lock()).toThrow(`${run.dir} is being trained by process ${process.ppid}; stop it first`);
    // a pid that cannot exist: stale, taken over
    writeFileSync(run.path('lock'), '2147483646\n');
    const again = run.lock();
    expect(readFileSync(run.path('lock'), 'utf8').trim()).toBe(String(process.pid));
    again();
    expect(existsSync(run.path('lock'))).toBe(false);
    release();
  });
});

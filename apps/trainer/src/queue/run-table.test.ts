import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { jobNote, jobRow, rowState } from './job-row.js';
import { etaSeconds, MetricsFollower } from './metrics-follower.js';
import { renderRunTable, stateCounts, type RunRow } from './run-table.js';

const row = (over: Partial<RunRow>): RunRow => ({ id: 'r', state: 'queued', worker: null, step: null, steps: 40, loss: null, valLoss: null, tokensPerSecond: null, etaSeconds: null, note: '', ...over });

describe('renderRunTable', () => {
  it('aligns text left and numbers right, one line per run under a header', () => {
    const lines = renderRunTable([
      row({ id: '1e14-peer-m', state: 'running', worker: 'gpu1:42', step: 120, steps: 1000, loss: 3.14159, tokensPerSecond: 12345.6, etaSeconds: 95, note: 'try 2 of 3' }),
      row({ id: '1e14-dense-s', state: 'done', worker: 'gpu2:7', step: 1000, steps: 1000, loss: 2.5, valLoss: 2.71828, tokensPerSecond: 999 }),
      row({ id: 'x', steps: 5 }),
    ]);
    expect(lines).toEqual([
      'run           state    worker          step    loss  val_loss   tok/s    eta',
      '1e14-peer-m   running  gpu1:42    120/1,000  3.1416            12,346  1m35s  try 2 of 3',
      '1e14-dense-s  done     gpu2:7   1,000/1,000  2.5000    2.7183     999',
      'x             queued                    -/5',
    ]);
    expect(stateCounts([row({ state: 'done' }), row({ state: 'queued' }), row({ state: 'done' })])).toBe('3 runs: 2 done, 1 queued');
  });
});

const job = (over: Partial<Job>): Job => ({ attemptsMade: 0, stalledCounter: 0, failedReason: undefined, progress: 0, returnvalue: undefined, processedBy: undefined, ...over }) as unknown as Job;

describe('a job as a table row', () => {
  it('maps BullMQ states (a waiting job that failed or lost its worker before is retrying)', () => {
    expect(rowState('waiting', job({}))).toBe('queued');
    expect(rowState('waiting', job({ stalledCounter: 1 }))).toBe('retrying');
    expect(rowState('prioritized', job({ attemptsMade: 1 }))).toBe('retrying');
    expect(rowState('delayed', job({ attemptsMade: 1 }))).toBe('retrying');
    expect(rowState('active', job({}))).toBe('running');
    expect(rowState('completed', job({}))).toBe('done');
    expect(rowState('failed', job({}))).toBe('failed');
    expect(rowState('unknown', job({}))).toBe('missing');
  });

  it('notes tries, lost workers, the checkpoint continued from and the last failure', () => {
    const progress = { worker: 'h:1', step: 30, steps: 40, loss: 3.5, tokensPerSecond: 100, etaSeconds: 10, resumedFrom: 20 };
    expect(jobNote('active', job({ stalledCounter: 1, progress }))).toBe('try 1 of 3; 1 lost worker; resumed from step 20');
    expect(jobNote('delayed', job({ attemptsMade: 1, failedReason: 'boom\nmore' }))).toBe('try 1 of 3; boom');
    expect(jobNote('failed', job({ attemptsMade: 3, failedReason: 'boom' }))).toBe('try 3 of 3; boom');
    const summary = { steps: 40, val_loss: 3.25, tokens_per_s: 123 };
    const done = job({ attemptsMade: 1, stalledCounter: 1, progress, returnvalue: { worker: 'h:2', summary, resumedFrom: 25, seconds: 3 } });
    expect(jobNote('completed', done)).toBe('1 lost worker; resumed from step 25');
    expect(jobRow('r', 40, 'completed', done)).toEqual({ id: 'r', state: 'done', worker: 'h:2', step: 40, steps: 40, loss: 3.5, valLoss: 3.25, tokensPerSecond: 123, etaSeconds: null, note: '1 lost worker; resumed from step 25' });
    expect(jobRow('r', 40, 'active', job({ progress }))).toMatchObject({ state: 'running', worker: 'h:1', step: 30, loss: 3.5, valLoss: null, etaSeconds: 10 });
  });
});

describe('MetricsFollower', () => {
  it('returns the newest complete train record, across partial lines and a file rewritten shorter', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'peer-follow-')), 'metrics.jsonl');
    const f = new MetricsFollower(path);
    expect(f.poll()).toBeUndefined();
    writeFileSync(path, '{"kind":"train","step":5,"loss":4}\n{"kind":"train","step":10,"loss":3.5}\n{"kind":"eval","step":10,"val_loss":3.6}\n{"kind":"tr');
    expect(f.poll()).toEqual({ kind: 'train', step: 10, loss: 3.5 });
    expect(f.poll()).toBeUndefined();
    appendFileSync(path, 'ain","step":15,"loss":3.25}\n');
    expect(f.poll()).toEqual({ kind: 'train', step: 15, loss: 3.25 });
    // a resumed run truncates the file to its checkpoint
    writeFileSync(path, '{"kind":"train","step":5,"loss":4}\n');
    expect(f.poll()).toEqual({ kind: 'train', step: 5, loss: 4 });
  });

  it('estimates the time left from the pace since the start of this try', () => {
    expect(etaSeconds(30, 40, 20, 0, 5000)).toBe(5);
    expect(etaSeconds(20, 40, 20, 0, 5000)).toBeNull();
  });
});

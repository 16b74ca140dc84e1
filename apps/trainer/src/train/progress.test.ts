import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createProgress, formatDuration, formatStats } from './progress.js';

describe('progress', () => {
  it('formats durations', () => {
    expect(formatDuration(5.4)).toBe('5s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(7265)).toBe('2h01m');
    expect(formatDuration(NaN)).toBe('?');
  });

  it('writes plain log lines (only when asked) when the stream is not a terminal', () => {
    const stream = new PassThrough() as unknown as NodeJS.WriteStream;
    let text = '';
    (stream as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString()));
    const p = createProgress({ totalSteps: 10, startStep: 0, stream, tty: false });
    const stats = { step: 1, loss: 2.5, lr: 1e-3, tokensPerSecond: 12345.6, mfu: 0.25 };
    p.update(stats, false);
    p.update({ ...stats, step: 2 }, true);
    p.log('eval step 2 | val_loss 2.4');
    p.stop();
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^step 2\/10 \| loss 2\.5000 \| lr 1\.00e-3 \| 12,346 tok\/s \| mfu 25\.0% \| eta /);
    expect(lines[1]).toBe('eval step 2 | val_loss 2.4');
    expect(formatStats({ ...stats, mfu: undefined }, 10, 3)).not.toContain('mfu');
  });
});

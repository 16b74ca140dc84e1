import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { maskUrl, parseQueueUrl, redisOptions } from './redis-url.js';

describe('parseQueueUrl', () => {
  it('reads host, port, database, user and password (percent-decoded)', () => {
    expect(parseQueueUrl('redis://alice:s%40cret@db.example:6380/3')).toEqual({
      masked: 'redis://alice:***@db.example:6380/3',
      host: 'db.example',
      port: 6380,
      db: 3,
      username: 'alice',
      password: 's@cret',
      tls: false,
    });
    expect(parseQueueUrl('redis://127.0.0.1')).toEqual({ masked: 'redis://127.0.0.1', host: '127.0.0.1', port: 6379, db: 0, tls: false });
    expect(parseQueueUrl('rediss://:pw@[::1]:7000/')).toMatchObject({ host: '::1', port: 7000, db: 0, password: 'pw', tls: true, masked: 'rediss://:***@[::1]:7000/' });
  });

  it('gives ioredis the same fields, TLS for rediss, and no per-command retry limit', () => {
    expect(redisOptions(parseQueueUrl('rediss://u:p@h:1/2'))).toEqual({ host: 'h', port: 1, db: 2, username: 'u', password: 'p', tls: { servername: 'h' }, maxRetriesPerRequest: null });
    expect(redisOptions(parseQueueUrl('redis://h'))).toEqual({ host: 'h', port: 6379, db: 0, maxRetriesPerRequest: null });
  });

  it('refuses a bad URL in one line, exit code 2, never showing the password', () => {
    const cases: [string, RegExp][] = [
      ['http://u:hunter2@h:1', /^--queue http:\/\/u:\*\*\*@h:1: unsupported scheme 'http'; expected redis:\/\//],
      ['redis://:hunter2@h:1/db', /^--queue redis:\/\/:\*\*\*@h:1\/db: database 'db' is not a number/],
      ['redis://:hunter2@h:99999', /^--queue redis:\/\/:\*\*\*@h:99999: not a URL/],
      ['localhost:6379', /^--queue localhost:6379: unsupported scheme 'localhost'/],
      ['redis://h:1/0?x=1', /: unexpected query or fragment/],
      ['not a url', /^--queue not a url: not a URL/],
    ];
    for (const [url, pattern] of cases) {
      let err: unknown;
      try {
        parseQueueUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err, url).toBeInstanceOf(UsageError);
      expect((err as UsageError).exitCode).toBe(2);
      expect((err as UsageError).message).toMatch(pattern);
      expect((err as UsageError).message).not.toContain('hunter2');
      expect((err as UsageError).message.split('\n')).toHaveLength(1);
    }
  });
});

describe('maskUrl', () => {
  it('masks the password only, also in URLs too broken to parse', () => {
    expect(maskUrl('redis://user:pw@h:1')).toBe('redis://user:***@h:1');
    expect(maskUrl('redis://:pw@h')).toBe('redis://:***@h');
    expect(maskUrl('redis://user@h')).toBe('redis://user@h');
    expect(maskUrl('redis://h:1')).toBe('redis://h:1');
    expect(maskUrl('redis://:p w%%@h:port:x')).toBe('redis://:***@h:port:x');
  });
});

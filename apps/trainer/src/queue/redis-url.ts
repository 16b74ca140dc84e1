// The --queue URL: redis://[user:pass@]host:port[/db] (rediss:// for TLS), checked up front so that
// a typo is one clear line (exit 2) rather than a client retrying forever. Messages show the URL
// with its password masked.
import type { RedisOptions } from 'ioredis';
import { UsageError } from '../errors.js';

export interface QueueUrl {
  /** The URL as given, password replaced by `***` (for every message). */
  masked: string;
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
}

/** `url` with its password (if any) replaced by `***`; text that is not a URL is returned as is. */
export function maskUrl(url: string): string {
  // by hand rather than new URL(): the input may be malformed, and its password must still not show
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_all, scheme: string, auth: string) => {
    const colon = auth.indexOf(':');
    return `${scheme}${colon < 0 ? auth : `${auth.slice(0, colon)}:***`}@`;
  });
}

export function parseQueueUrl(url: string, flag = '--queue'): QueueUrl {
  const masked = maskUrl(url);
  const bad = (why: string) => new UsageError(`${flag} ${masked}: ${why}; expected redis://[user:pass@]host:port[/db] (rediss:// for TLS)`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad('not a URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw bad(`unsupported scheme '${u.protocol.replace(/:$/, '')}'`);
  if (!u.hostname) throw bad('no host');
  if (u.search || u.hash) throw bad('unexpected query or fragment');
  const port = u.port === '' ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) throw bad(`database '${decodeURIComponent(path)}' is not a number`);
  const db = path === '' ? 0 : Number(path);
  return {
    masked,
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    tls: u.protocol === 'rediss:',
  };
}

/** ioredis options of `q`, as BullMQ wants them (no per-command retry limit: a worker waits out a Redis restart). */
export function redisOptions(q: QueueUrl): RedisOptions {
  return {
    host: q.host,
    port: q.port,
    db: q.db,
    ...(q.username !== undefined ? { username: q.username } : {}),
    ...(q.password !== undefined ? { password: q.password } : {}),
    ...(q.tls ? { tls: { servername: q.host } } : {}),
    maxRetriesPerRequest: null,
  };
}

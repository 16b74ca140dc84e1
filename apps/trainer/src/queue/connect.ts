// Reaching the Redis of --queue before anything else: one probe connection with a short timeout and
// no retries, so that Redis being down, a wrong host or a refused password is one line naming the
// URL (password masked) and exit code 2, instead of a client that retries forever.
import { Redis } from 'ioredis';
import { UsageError } from '../errors.js';
import { redisOptions, type QueueUrl } from './redis-url.js';

const PROBE_TIMEOUT_MS = 5000;

function describe(err: Error & { code?: string }, q: QueueUrl): string {
  const text = err.message ?? String(err);
  if (err.code === 'ECONNREFUSED') return `cannot reach Redis at ${q.masked}: connection refused (is redis-server running there?)`;
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return `cannot reach Redis at ${q.masked}: unknown host '${q.host}'`;
  if (/WRONGPASS|invalid password|invalid username-password/i.test(text)) return `Redis at ${q.masked} refused the user name or password (${text.split('\n')[0]})`;
  if (/NOAUTH/.test(text)) return `Redis at ${q.masked} requires a password: give it in the URL, redis://:PASSWORD@host:port`;
  if (/without any password configured|no password is set/i.test(text)) return `Redis at ${q.masked} has no password set: drop it from the URL`;
  if (/timed? ?out|ETIMEDOUT/i.test(text) || err.code === 'ETIMEDOUT') return `cannot reach Redis at ${q.masked}: no answer within ${PROBE_TIMEOUT_MS / 1000} s`;
  return `cannot use Redis at ${q.masked}: ${text.split('\n')[0]}`;
}

/** Connects once, authenticates and pings; throws a UsageError (exit 2) naming the masked URL. */
export async function probeRedis(q: QueueUrl): Promise<void> {
  const client = new Redis({
    ...redisOptions(q),
    lazyConnect: true,
    connectTimeout: PROBE_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // the cause (ECONNREFUSED, ENOTFOUND...) arrives as an event; connect() then rejects with a bare 'Connection is closed'
  let cause: Error | undefined;
  client.on('error', (err: Error) => {
    cause ??= err;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), PROBE_TIMEOUT_MS + 1000);
    });
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
      })(),
      timeout,
    ]);
  } catch (err) {
    throw new UsageError(describe((cause ?? err) as Error & { code?: string }, q));
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

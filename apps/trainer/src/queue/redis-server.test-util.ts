// A real redis-server for the queue tests: 127.0.0.1, a free port, a temp folder, no persistence;
// stopped by the test. CI installs the Debian package (.ci/run); without it the tests skip locally
// and fail under CI=true, naming the missing program.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER = process.env.PEER_REDIS_SERVER ?? 'redis-server';

/** Whether redis-server runs here; under CI its absence is an error, not a skip. */
export function redisServerAvailable(): boolean {
  const ok = spawnSync(REDIS_SERVER, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!ok && process.env.CI) {
    throw new Error(`${REDIS_SERVER} is not installed, and the queue tests cannot skip under CI: .ci/run installs it (apt-get install redis-server)`);
  }
  return ok;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  /** redis://[:password@]127.0.0.1:port */
  url: string;
  stop(): Promise<void>;
}

async function startOnce(port: number, password: string | undefined, dir: string): Promise<ChildProcess | string> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
  if (password !== undefined) args.push('--requirepass', password);
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(`no 'Ready to accept connections' within 10 s: ${output.slice(-500)}`);
    }, 10_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(`exited with code ${code}: ${output.slice(-500)}`);
    });
  });
}

export async function startRedisServer(options: { password?: string } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'peer-redis-'));
  let failure = '';
  // another process may take the free port before redis-server binds it: try a few
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const started = await startOnce(port, options.password, dir);
    if (typeof started === 'string') {
      failure = started;
      continue;
    }
    const child = started;
    child.stdout!.resume();
    child.stderr!.resume();
    return {
      port,
      url: `redis://${options.password !== undefined ? `:${options.password}@` : ''}127.0.0.1:${port}`,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`${REDIS_SERVER} did not start: ${failure}`);
}

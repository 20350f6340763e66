/**
 * A private redis-server process (the real binary) on a free port, in its own folder: for the
 * benchmark and the tests, never for production (there, REDIS_URL points at a managed Redis).
 * With `aof` every write is persisted (appendonly, fsync always) so a restart keeps the queues.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Stop (SIGTERM, or SIGKILL with `kill`) and start again on the same port and folder. */
  restart(opts?: { kill?: boolean; downMs?: number }): Promise<void>;
  /** Stop the server and remove its folder. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Append-only persistence with fsync on every write. @defaultValue false */
  aof?: boolean;
  /** @defaultValue 'redis-server' (from PATH) */
  bin?: string;
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

async function waitForReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      // with AOF, commands fail with LOADING until the file is read back
      if ((await client.ping()) === 'PONG' && !/loading:1/.test(await client.info('persistence'))) return;
    } catch {
      /* not up yet */
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server at ${url} did not answer within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const bin = opts.bin ?? 'redis-server';
  const dir = await mkdtemp(join(tmpdir(), 'fw-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let log = '';
  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'];
    args.push(...(opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c: Buffer): void => {
      log = (log + c.toString()).slice(-4000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    child = p;
    const exited = new Promise<never>((_, reject) => {
      p.once('error', (e) => reject(new Error(`cannot run ${bin}: ${e.message}`)));
      p.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${log}`)));
    });
    exited.catch(() => undefined);
    await Promise.race([waitForReady(url, 10_000), exited]);
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const p = child;
    child = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    await gone;
  };
  await launch();
  return {
    url,
    port,
    dir,
    async restart(o = {}) {
      await halt(o.kill ? 'SIGKILL' : 'SIGTERM');
      if (o.downMs) await sleep(o.downMs);
      await launch();
    },
    async stop() {
      await halt('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

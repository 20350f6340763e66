/**
 * A real redis-server for tests, started on a free port in a temporary folder (never the
 * machine's 6379). With `aof: true` it persists every write (appendonly, fsync always), so a test
 * can `restart()` it and find the queues as they were. When REDIS_URL is set, tests use that
 * server instead (use a unique queue prefix per test; `restart` is then unavailable).
 */
import { freePort, startRedisServer, type RedisServerOptions } from '../../src/jobs/queue/redis-server.js';

export { freePort };

export interface TestRedis {
  readonly url: string;
  /** True when this helper started the server (false with an external REDIS_URL). */
  readonly owned: boolean;
  restart(opts?: { kill?: boolean; downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<TestRedis> {
  const external = process.env.REDIS_URL;
  if (external && !opts.aof) {
    return { url: external, owned: false, restart: () => Promise.reject(new Error('cannot restart an external REDIS_URL server')), stop: async () => undefined };
  }
  const server = await startRedisServer(opts);
  return { url: server.url, owned: true, restart: (o) => server.restart(o), stop: () => server.stop() };
}

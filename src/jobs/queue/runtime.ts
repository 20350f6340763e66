/**
 * The queue runtime: Redis connections, the BullMQ queues and flow producer, framewise's own
 * Redis keys, the artifact store and the feature store, from one `Config`.
 *
 * Producers (API, CLI) use one shared connection whose commands fail within about a second
 * while Redis is down (`FW_ERR_QUEUE_UNAVAILABLE`); workers use connections that wait and reconnect, so a Redis
 * restart pauses them rather than failing jobs. PostgreSQL (`db`: results, batches and their
 * entries) is opened with the runtime and connects on first use; the API and the workers that
 * need it call `db.ready()` at start-up.
 */
import { join } from 'node:path';
import { FlowProducer, Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../../config/index.js';
import { FramewiseError } from '../../errors/index.js';
import { openDatabase, type Database } from '../../db/database.js';
import { FeatureStore } from '../../features/feature-store.js';
import { LocalArtifactStore, type ArtifactStore } from './artifact-store.js';
import { ALL_QUEUES, QueueName } from './names.js';

export type RuntimeRole = 'producer' | 'worker';

/** Reconnect quickly after a Redis restart (BullMQ's default backs off to 20 s). */
const retryStrategy = (times: number): number => Math.min(250 + times * 250, 5000);

/** ioredis options for a role; workers must have `maxRetriesPerRequest: null` (BullMQ requires it). */
export function redisOptions(role: RuntimeRole): RedisOptions & { retryStrategy: (times: number) => number } {
  return role === 'worker'
    ? { maxRetriesPerRequest: null, enableOfflineQueue: true, retryStrategy }
    : // a command waits for the first connection, then fails after one reconnection attempt (~1 s)
      { maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy, connectTimeout: 5000 };
}

/** BullMQ connection options (each Worker opens its own connections from these). */
export function workerConnection(config: Config): ConnectionOptions {
  return { url: config.queue.redisUrl, ...redisOptions('worker') };
}

/** Keys framewise keeps next to BullMQ's, under `<prefix>:meta:`. */
export class MetaKeys {
  constructor(readonly prefix: string) {}
  private k(...parts: string[]): string {
    return [this.prefix, 'meta', ...parts].join(':');
  }
  /** Hash: a running batch's record and counters (its entries are in PostgreSQL). */
  batch(id: string): string {
    return this.k('batch', id);
  }
  /** Set: the batch's clips with a stage running now (at most the workers' concurrency). */
  batchActive(id: string): string {
    return this.k('batch', id, 'active');
  }
  /** Set: the paused batch's clips that workers have put aside (at most the ingest window). */
  batchPaused(id: string): string {
    return this.k('batch', id, 'paused');
  }
  /** Sorted set: uploaded files to delete, by when (retention; see retention.ts). */
  uploadsExpiry(): string {
    return this.k('uploads', 'expiry');
  }
  /** Set: webhook URLs to call when the clip finishes. */
  clipWebhooks(clipId: string): string {
    return this.k('clip', clipId, 'webhooks');
  }
  /** String: set when a clip was cancelled. */
  cancelled(clipId: string): string {
    return this.k('clip', clipId, 'cancelled');
  }
  /** String: a training's cancellation (JSON record; also for trainings removed while waiting). */
  trainingCancelled(trainingId: string): string {
    return this.k('training', trainingId, 'cancelled');
  }
}

export interface QueueRuntime {
  readonly config: Config;
  readonly role: RuntimeRole;
  readonly prefix: string;
  /** Connection for framewise's own keys (and, for producers, the queues). */
  readonly redis: Redis;
  readonly queues: Readonly<Record<QueueName, Queue>>;
  readonly flow: FlowProducer;
  readonly keys: MetaKeys;
  readonly artifacts: ArtifactStore;
  readonly store: FeatureStore;
  /** PostgreSQL: results, batches and their entries (connects on first use). */
  readonly db: Database;
  /** attempts + exponential backoff; finished jobs leave Redis by age and count (results live in PostgreSQL). */
  readonly jobOptions: JobsOptions;
  close(): Promise<void>;
  /** Cut every connection now, without waiting for Redis (a forced shutdown). */
  disconnect(): void;
}

/**
 * How long finished jobs stay in Redis (FRAMEWISE_RETENTION_JOBS_AGE_S / _COUNT): at most that
 * age, at most that many per queue and outcome; a count of 0 removes them as they finish.
 */
export function finishedJobRetention(r: Pick<Config['queue']['retention'], 'jobsAgeS' | 'jobsCount'>): Pick<JobsOptions, 'removeOnComplete' | 'removeOnFail'> {
  const keep = r.jobsCount === 0 ? true : { age: r.jobsAgeS, count: r.jobsCount };
  return { removeOnComplete: keep, removeOnFail: keep };
}

export function openQueueRuntime(config: Config, role: RuntimeRole = 'producer'): QueueRuntime {
  const q = config.queue;
  const redis = new Redis(q.redisUrl, redisOptions(role));
  redis.on('error', () => undefined); // reported through failing commands; avoid unhandled 'error' events
  // producers share the fail-fast connection; workers' queues get their own waiting connections
  const connection: ConnectionOptions = role === 'producer' ? redis : { url: q.redisUrl, ...redisOptions('worker') };
  const queues = Object.fromEntries(ALL_QUEUES.map((name) => [name, new Queue(name, { connection, prefix: q.prefix })])) as Record<QueueName, Queue>;
  for (const queue of Object.values(queues)) queue.on('error', () => undefined);
  const flow = new FlowProducer({ connection, prefix: q.prefix });
  flow.on('error', () => undefined);
  const db = openDatabase(q);
  let closing: Promise<void> | undefined;
  return {
    config,
    role,
    prefix: q.prefix,
    redis,
    queues,
    flow,
    keys: new MetaKeys(q.prefix),
    artifacts: new LocalArtifactStore(join(q.dataDir, 'artifacts')),
    store: new FeatureStore(config.cacheDir),
    db,
    jobOptions: { attempts: q.attempts, backoff: { type: 'exponential', delay: q.backoffMs }, ...finishedJobRetention(q.retention) },
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...Object.values(queues).map((x) => x.close()), flow.close(), db.close()]);
        redis.disconnect();
      })();
      return closing;
    },
    disconnect() {
      for (const x of [...Object.values(queues), flow]) void x.disconnect().catch(() => undefined);
      redis.disconnect();
      void db.close();
    },
  };
}

const UNAVAILABLE = /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|ECONNRESET|EPIPE|enableOfflineQueue|Connection is closed|MaxRetriesPerRequest|Stream isn't writeable|connect ETIMEDOUT|Reached the max retries/i;

/** Redis connection failures as FW_ERR_QUEUE_UNAVAILABLE; anything else unchanged. */
export function toQueueError(err: unknown): unknown {
  if (err instanceof FramewiseError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (UNAVAILABLE.test(message) || (err instanceof Error && err.name === 'MaxRetriesPerRequestError')) {
    return new FramewiseError('FW_ERR_QUEUE_UNAVAILABLE', `Redis is unreachable: ${message}`, { cause: err });
  }
  return err;
}

/** Run a Redis-touching operation; connection failures become FW_ERR_QUEUE_UNAVAILABLE. */
export async function withQueue<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toQueueError(err);
  }
}

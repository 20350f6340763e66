/**
 * Prometheus metrics of the whole queue, served by the API (`GET /metrics`):
 * - `framewise_queue_jobs{queue,state}`: jobs per queue and state, read from Redis in the background
 *   (a scrape waits at most 0.5 s for a fresh reading, then answers with the last one;
 *   `framewise_queue_jobs_age_seconds` and `framewise_queue_jobs_stale` say how old it is);
 * - `framewise_stage_duration_seconds{stage}`: processing time of finished stage jobs;
 * - `framewise_frames_embedded_total`, `framewise_embed_frames_per_second`: embedding throughput
 *   (the counter's rate is the frames/s; the gauge is the last job's own rate);
 * - `framewise_jobs_completed_total{queue}`, `framewise_job_failures_total{queue,code}`;
 * plus the API process's default metrics. Stage events come from BullMQ's QueueEvents (Redis
 * streams), so they count the work of every worker on every machine while the API runs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Job, QueueEvents } from 'bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { parseFailedReason } from '../jobs/queue/clips.js';
import { ALL_QUEUES, STAGE_QUEUES, QueueName } from '../jobs/queue/names.js';
import type { EmbedJobResult } from '../jobs/queue/payloads.js';
import { workerConnection, type QueueRuntime } from '../jobs/queue/runtime.js';

/** Queue counts younger than this are served without asking Redis again. */
const QUEUE_READ_MAX_AGE_MS = 1000;
/** How long a scrape waits for fresh queue counts before answering with the last ones. */
const QUEUE_READ_WAIT_MS = 500;

const JOB_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'waiting-children', 'completed', 'failed'] as const;

export interface ApiMetrics {
  readonly registry: Registry;
  close(): Promise<void>;
}

export function createMetrics(rt: QueueRuntime): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'framewise_api_' });
  // queue counts are read from Redis in the background and served from the last reading: a scrape
  // never waits more than QUEUE_READ_WAIT_MS for Redis (an outage must not stall Prometheus)
  let counts = new Map<string, Partial<Record<(typeof JOB_STATES)[number], number>>>();
  let readAt = 0;
  let lastFailed = false;
  let reading: Promise<void> | undefined;
  let readingSince = 0;
  const readCounts = (): Promise<void> =>
    (reading ??= (async () => {
      readingSince = Date.now();
      try {
        const fresh = new Map<string, Partial<Record<(typeof JOB_STATES)[number], number>>>();
        for (const name of ALL_QUEUES) fresh.set(name, await rt.queues[name].getJobCounts(...JOB_STATES));
        counts = fresh;
        readAt = Date.now();
        lastFailed = false;
      } catch {
        lastFailed = true;
      } finally {
        reading = undefined;
      }
    })());
  // prom-client collects every metric at once: each queue gauge waits for the same reading
  const settle = async (): Promise<void> => {
    if (Date.now() - readAt > QUEUE_READ_MAX_AGE_MS) await Promise.race([readCounts(), sleep(QUEUE_READ_WAIT_MS)]);
  };
  new Gauge({
    name: 'framewise_queue_jobs',
    help: 'Jobs per queue and state (read from Redis in the background: see framewise_queue_jobs_age_seconds).',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      await settle();
      this.reset();
      for (const [queue, c] of counts) for (const state of JOB_STATES) this.set({ queue, state }, c[state] ?? 0);
    },
  });
  new Gauge({
    name: 'framewise_queue_jobs_age_seconds',
    help: 'Age of the framewise_queue_jobs values (seconds since Redis last answered; -1 before the first answer).',
    registers: [registry],
    async collect() {
      await settle();
      this.set(readAt === 0 ? -1 : (Date.now() - readAt) / 1000);
    },
  });
  new Gauge({
    name: 'framewise_queue_jobs_stale',
    help: '1 when the last reading of the queue counts failed, or Redis has not answered the current one within 0.5 s (the values are older), else 0.',
    registers: [registry],
    async collect() {
      await settle();
      this.set(lastFailed || (reading !== undefined && Date.now() - readingSince >= QUEUE_READ_WAIT_MS) ? 1 : 0);
    },
  });
  const duration = new Histogram({
    name: 'framewise_stage_duration_seconds',
    help: 'Processing time of finished stage jobs (from start to finish of the successful attempt).',
    labelNames: ['stage'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const frames = new Counter({ name: 'framewise_frames_embedded_total', help: 'Frames embedded by the embed workers.', registers: [registry] });
  const fps = new Gauge({ name: 'framewise_embed_frames_per_second', help: 'Frames per second of the last embedded clip (including its wait in the batcher).', registers: [registry] });
  const completed = new Counter({ name: 'framewise_jobs_completed_total', help: 'Stage jobs completed.', labelNames: ['queue'], registers: [registry] });
  const failures = new Counter({ name: 'framewise_job_failures_total', help: 'Stage job failures (each failed attempt) by error code.', labelNames: ['queue', 'code'], registers: [registry] });

  const events = STAGE_QUEUES.map((name) => {
    const ev = new QueueEvents(name, { connection: workerConnection(rt.config), prefix: rt.prefix });
    ev.on('error', () => undefined);
    ev.on('completed', ({ jobId, returnvalue }) => {
      completed.inc({ queue: name });
      if (name === QueueName.Embed) {
        const r = returnvalue as unknown as EmbedJobResult | undefined;
        if (r && !r.cached && r.frames > 0) {
          frames.inc(r.frames);
          if (r.embedMs > 0) fps.set(r.frames / (r.embedMs / 1000));
        }
      }
      Job.fromId(rt.queues[name], jobId)
        .then((job) => {
          if (job?.processedOn && job.finishedOn) duration.observe({ stage: name }, (job.finishedOn - job.processedOn) / 1000);
        })
        .catch(() => undefined);
    });
    ev.on('failed', ({ failedReason }) => {
      failures.inc({ queue: name, code: parseFailedReason(failedReason).code });
    });
    return ev;
  });

  return {
    registry,
    async close() {
      await Promise.allSettled(events.map((e) => e.close()));
    },
  };
}

/**
 * Server-sent events built on a polled status, so an event is never missed between subscribing
 * and reading; `: keep-alive` comments keep proxies from closing a quiet stream; a Redis restart
 * keeps the stream open (the next poll catches up).
 *
 * For one job (`streamJobEvents`): `state` and `stage` events while it runs (per-stage state and
 * progress, and the `detail` of a long stage such as a windowed clip's embed pass, sent when they
 * change), then one final `result`, `failed` or `cancelled` event, and the stream ends. Trainings
 * use the same machinery (src/api/training-routes.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { clipStatus, toResult, type ClipStatus } from '../jobs/queue/clips.js';
import { STAGE_QUEUES } from '../jobs/queue/names.js';
import type { QueueRuntime } from '../jobs/queue/runtime.js';
import { FramewiseError } from '../errors/index.js';
import { safeError, safeStatus } from './errors.js';

export interface SseOptions {
  /** @defaultValue 200 */
  pollMs?: number;
  /** @defaultValue 15000 */
  keepAliveMs?: number;
}

/** An open event stream. */
export interface EventStream {
  send(event: string, data: unknown): void;
  readonly closed: boolean;
}

/**
 * Stream a polled status: `emit` turns each status into events and says when the stream is done.
 * Call it after reading the first status, so that a missing job is an HTTP error, not a stream.
 * `ids` go into an `error` event when reading fails for another reason than Redis being away.
 */
export async function streamPolled<S>(req: FastifyRequest, reply: FastifyReply, first: S, read: () => Promise<S>, emit: (stream: EventStream, status: S) => boolean, ids: Record<string, string>, opts: SseOptions = {}): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  let closed = false;
  req.raw.on('close', () => {
    closed = true;
  });
  let seq = 0;
  let lastWrite = Date.now();
  const stream: EventStream = {
    send(event, data) {
      if (closed) return;
      res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      lastWrite = Date.now();
    },
    get closed() {
      return closed;
    },
  };
  const keepAliveMs = opts.keepAliveMs ?? 15_000;
  let status = first;
  try {
    while (!closed) {
      if (emit(stream, status)) break;
      if (Date.now() - lastWrite > keepAliveMs && !closed) {
        res.write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
      await sleep(opts.pollMs ?? 200);
      try {
        status = await read();
      } catch (err) {
        if (err instanceof FramewiseError && err.code === 'FW_ERR_QUEUE_UNAVAILABLE') continue; // Redis restarting: keep the stream
        stream.send('error', { ...ids, error: safeError(err instanceof FramewiseError ? err.toJSON() : { code: 'FW_ERR_INTERNAL', message: String(err) }) });
        break;
      }
    }
  } finally {
    if (!res.writableEnded) res.end();
  }
}

export async function streamJobEvents(rt: QueueRuntime, jobId: string, req: FastifyRequest, reply: FastifyReply, opts: SseOptions = {}): Promise<void> {
  const first: ClipStatus = await clipStatus(rt, jobId); // 404 before the stream starts
  const last = new Map<string, string>();
  let lastState = '';
  const emit = (stream: EventStream, status: ClipStatus): boolean => {
    for (const stage of STAGE_QUEUES) {
      const s = status.stages[stage];
      const snapshot = JSON.stringify([s.state, s.progress, s.attempts, s.detail]);
      if (last.get(stage) !== snapshot) {
        last.set(stage, snapshot);
        stream.send('stage', { jobId, stage, state: s.state, progress: s.progress, attempts: s.attempts, ...(s.detail ? { detail: s.detail } : {}) });
      }
    }
    if (status.state !== lastState) {
      lastState = status.state;
      stream.send('state', { jobId, state: status.state, stage: status.stage });
    }
    if (status.state === 'completed' || status.state === 'failed' || status.state === 'cancelled') {
      stream.send(status.state === 'completed' ? 'result' : status.state, { jobId, state: status.state, result: status.result, error: safeError(status.error), line: safeStatus(toResult(status)) });
      return true;
    }
    return false;
  };
  await streamPolled(req, reply, first, () => clipStatus(rt, jobId), emit, { jobId }, opts);
}

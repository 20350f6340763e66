/**
 * Server-sent events for one job: `state` and `stage` events while it runs (per-stage state and
 * progress, and the `detail` of a long stage such as a windowed clip's embed pass, sent when they change), then one final `result`, `failed` or `cancelled` event, and
 * the stream ends. Built on the job's status (polled), so an event is never missed between
 * subscribing and reading; `: keep-alive` comments keep proxies from closing a quiet stream.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { clipStatus, toResult, type ClipStatus } from '../jobs/queue/clips.js';
import { STAGE_QUEUES } from '../jobs/queue/names.js';
import type { QueueRuntime } from '../jobs/queue/runtime.js';
import { FramewiseError } from '../errors/index.js';

export interface SseOptions {
  /** @defaultValue 200 */
  pollMs?: number;
  /** @defaultValue 15000 */
  keepAliveMs?: number;
}

export async function streamJobEvents(rt: QueueRuntime, jobId: string, req: FastifyRequest, reply: FastifyReply, opts: SseOptions = {}): Promise<void> {
  let status: ClipStatus = await clipStatus(rt, jobId); // 404 before the stream starts
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  let closed = false;
  req.raw.on('close', () => {
    closed = true;
  });
  let seq = 0;
  const send = (event: string, data: unknown): void => {
    if (!closed) res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const last = new Map<string, string>();
  let lastState = '';
  let lastWrite = Date.now();
  const pollMs = opts.pollMs ?? 200;
  const keepAliveMs = opts.keepAliveMs ?? 15_000;
  try {
    while (!closed) {
      for (const stage of STAGE_QUEUES) {
        const s = status.stages[stage];
        const snapshot = JSON.stringify([s.state, s.progress, s.attempts, s.detail]);
        if (last.get(stage) !== snapshot) {
          last.set(stage, snapshot);
          send('stage', { jobId, stage, state: s.state, progress: s.progress, attempts: s.attempts, ...(s.detail ? { detail: s.detail } : {}) });
          lastWrite = Date.now();
        }
      }
      if (status.state !== lastState) {
        lastState = status.state;
        send('state', { jobId, state: status.state, stage: status.stage });
        lastWrite = Date.now();
      }
      if (status.state === 'completed' || status.state === 'failed' || status.state === 'cancelled') {
        const result = toResult(status);
        send(status.state === 'completed' ? 'result' : status.state, { jobId, state: status.state, result: status.result, error: status.error, line: result });
        break;
      }
      if (Date.now() - lastWrite > keepAliveMs && !closed) {
        res.write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
      await sleep(pollMs);
      try {
        status = await clipStatus(rt, jobId);
      } catch (err) {
        if (err instanceof FramewiseError && err.code === 'FW_ERR_QUEUE_UNAVAILABLE') continue; // Redis restarting: keep the stream
        send('error', { jobId, error: err instanceof FramewiseError ? err.toJSON() : { code: 'FW_ERR_INTERNAL', message: String(err) } });
        break;
      }
    }
  } finally {
    if (!res.writableEnded) res.end();
  }
}

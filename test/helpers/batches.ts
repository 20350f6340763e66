/**
 * Following a batch through the HTTP API in tests: its status until a condition holds (by default
 * until it has finished: `finishedAt` set, after its listing and every file), and its results.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { LabelResult } from '../../src/jobs/label.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';

export const batchFinished = (s: BatchStatus): boolean => s.finishedAt !== null;
export const batchListed = (s: BatchStatus): boolean => s.ingest.state === 'done' || s.ingest.state === 'cancelled' || s.ingest.state === 'failed';

export async function waitBatch(app: FastifyInstance, batchId: string, until: (s: BatchStatus) => boolean = batchFinished, timeoutMs = 120_000): Promise<BatchStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await app.inject({ method: 'GET', url: `/v1/batches/${batchId}` });
    if (res.statusCode !== 200) throw new Error(`GET /v1/batches/${batchId}: ${res.statusCode} ${res.body}`);
    const s = res.json<BatchStatus>();
    if (until(s)) return s;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} did not get there: ${res.body}`);
    await sleep(100);
  }
}

/** The batch's results as JSON Lines, parsed. */
export async function batchLines(app: FastifyInstance, batchId: string, query = ''): Promise<LabelResult[]> {
  const res = await app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results${query}` });
  if (res.statusCode !== 200) throw new Error(`GET results: ${res.statusCode} ${res.body}`);
  return res.body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LabelResult);
}

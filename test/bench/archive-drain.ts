/**
 * Stand-in stage workers for the archive benchmark (`npm run bench -- --only archive`), run as a
 * process of their own: decode and embed complete at once, classify writes a made-up result
 * through the real bookkeeping (`writeResult`: the result row upserted in PostgreSQL, the batch
 * entries settled, the counters added). They drain a 100,000-file batch at the speed of the queue
 * and the database, so that what is measured is the ingest, the status, Redis's footprint and the
 * export — not the models (the 500-clip run measures those, with the real workers).
 * The configuration comes from the environment (REDIS_URL, DATABASE_URL, …) like any worker's.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'bullmq';
import { loadConfig } from '../../src/config/index.js';
import type { LabelSuccess } from '../../src/jobs/label.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { writeResult } from '../../src/jobs/queue/outcomes.js';
import type { ClassifyJobData, DecodeJobResult, EmbedJobResult } from '../../src/jobs/queue/payloads.js';
import { openQueueRuntime, workerConnection } from '../../src/jobs/queue/runtime.js';

const LABELS = ['zoom_in', 'zoom_out', 'pan_left', 'pan_right'];

/** A made-up result, decided by the clip's content hash (deterministic). */
function madeUp(data: ClassifyJobData): LabelSuccess {
  const h = createHash('sha256').update(data.clip.contentHash).digest();
  const i = (h[0] as number) % LABELS.length;
  const p = 0.4 + ((h[1] as number) / 255) * 0.6;
  const rest = (1 - p) / (LABELS.length - 1);
  const b = data.clip.backbone;
  return {
    path: data.clip.source,
    ok: true,
    label: LABELS[i] as string,
    confidence: p,
    topK: [{ label: LABELS[i] as string, p }, ...LABELS.filter((_, j) => j !== i).slice(0, data.topK - 1).map((label) => ({ label, p: rest }))],
    model: { id: data.model.id, version: data.model.version },
    backbone: { id: b.id, version: b.version, featureKind: b.featureKind, engine: 'none', backend: null },
    sampling: { policy: `${data.clip.sampling.policy.kind}`, size: data.clip.sampling.size, crop: data.clip.sampling.crop },
    frames: 16,
    durationSec: 1,
    cached: true,
  };
}

const config = loadConfig();
const rt = openQueueRuntime(config, 'worker');
await rt.db.ready();
const opts = { connection: workerConnection(config), prefix: rt.prefix, concurrency: 64 };
const workers = [
  new Worker(QueueName.Decode, async (): Promise<DecodeJobResult> => ({ hit: true, frames: 16, decodeMs: 0 }), opts),
  new Worker(QueueName.Embed, async (): Promise<EmbedJobResult> => ({ cached: true, frames: 16, embedMs: 0, backbone: null }), opts),
  new Worker<ClassifyJobData, LabelSuccess>(QueueName.Classify, (job) => writeResult(rt, job, async () => madeUp(job.data)), opts),
];
await Promise.all(workers.map((w) => w.waitUntilReady()));
process.stdout.write('ready\n');
const stop = async (): Promise<void> => {
  await Promise.allSettled(workers.map((w) => w.close()));
  await rt.close();
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());

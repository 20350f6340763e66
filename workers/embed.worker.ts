/**
 * The embed worker process (GPU-bound): loads and warms the backbone once, holds
 * FRAMEWISE_EMBED_CONCURRENCY jobs and batches their frames into one backbone. One per GPU.
 * With none running, embed jobs wait in the queue (they do not fail).
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['embed'], 'embed');

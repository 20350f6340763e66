/**
 * The ingest worker process: lists the sources of batches (POST /v1/batches, `framewise batch`)
 * as streams, hashes their files and queues their clips chunk by chunk, holding back while a
 * batch has FRAMEWISE_INGEST_WINDOW unfinished files; FRAMEWISE_INGEST_CONCURRENCY batches at
 * once. Needs Redis and PostgreSQL (DATABASE_URL), and the files (the paths the API accepted).
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['ingest'], 'ingest');

/**
 * The decode worker process: ffprobe + one sequential ffmpeg decode per clip (CPU), concurrency
 * FRAMEWISE_DECODE_CONCURRENCY (about the number of cores). Run as many as the machines allow.
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['decode'], 'decode');

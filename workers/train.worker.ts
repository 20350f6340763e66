/**
 * The train worker process: training jobs (POST /v1/trainings), one at a time, with the same
 * `runTraining` as `framewise train`. One process per device.
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['train'], 'train');

/**
 * The train worker process: a seam for training the head as a queue job (not implemented yet:
 * its jobs fail with FW_ERR_NOT_IMPLEMENTED).
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['train'], 'train');

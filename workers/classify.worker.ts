/**
 * The classify worker process: loads and warms the temporal head once (concurrency 1), turns
 * stored features into results, and sends webhooks (it also runs the webhook queue).
 */
import { runWorkerProcess } from '../src/jobs/queue/workers.js';

await runWorkerProcess(['classify', 'webhook'], 'classify');

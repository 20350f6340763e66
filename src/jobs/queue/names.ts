/**
 * Queue and job names of queue mode (string enums, as stored in Redis).
 *
 * One flow per clip, parents after children (BullMQ runs children first):
 *   classify (root) ◄─ embed ◄─ decode (leaf)
 * `webhook` delivers completion callbacks; `train` runs training jobs (`trainings.ts`); `ingest`
 * lists a batch's source and queues its clips (`ingest.ts`).
 */

export enum QueueName {
  /** ffprobe + one sequential ffmpeg decode (CPU); frames go to the artifact store. */
  Decode = 'decode',
  /** Backbone embeddings (GPU-bound), batched across jobs; features go to the feature store. */
  Embed = 'embed',
  /** The temporal head over the stored features → the label result (the flow's root job). */
  Classify = 'classify',
  /** HTTP callbacks on job / batch completion, retried with backoff. */
  Webhook = 'webhook',
  /** Training the head as a job (one per train worker at a time): see `trainings.ts`. */
  Train = 'train',
  /** A batch's listing: walk the source, hash, record the entries, queue the clips (see `ingest.ts`). */
  Ingest = 'ingest',
}

export enum JobName {
  Decode = 'decode',
  Embed = 'embed',
  Classify = 'classify',
  Webhook = 'webhook',
  Train = 'train',
  Ingest = 'ingest',
}

/** The three stage queues of a clip's flow, in processing order. */
export const STAGE_QUEUES = [QueueName.Decode, QueueName.Embed, QueueName.Classify] as const;
export type StageQueue = (typeof STAGE_QUEUES)[number];

/** Every queue framewise creates (for Bull Board, metrics and cleanup). */
export const ALL_QUEUES = [QueueName.Decode, QueueName.Embed, QueueName.Classify, QueueName.Webhook, QueueName.Train, QueueName.Ingest] as const;

/** BullMQ priorities (lower runs first): single clips go ahead of batch jobs. */
export const PRIORITY = { interactive: 1, batch: 10 } as const;
export type PriorityClass = keyof typeof PRIORITY;

/**
 * Job payloads and return values of queue mode: one discriminated union keyed by job name.
 * Payloads carry ids, paths and small JSON, never frames or tensors (frames go to the artifact
 * store, embeddings to the feature store, both referenced by key).
 */
import type { BackboneIdentity } from '../../ml/backbone-specs.js';
import type { BackboneInfo } from '../../ml/backbone.js';
import type { VideoInfo } from '../../media/ffmpeg.js';
import type { CropMode, SamplingPolicy } from '../../media/sampling.js';
import type { LabelResult, LabelSuccess } from '../label.js';
import { JobName } from './names.js';

/** What every stage of one clip's flow knows about the clip. */
export interface ClipRef {
  /** The flow's root (classify) job id; the stage jobs are `<clipId>-decode` and `<clipId>-embed`. */
  clipId: string;
  /** Absolute path the workers read (an upload under FRAMEWISE_DATA_DIR, or a file within the roots). */
  path: string;
  /** The name reported in results: the path as given, the upload's file name, or the URL. */
  source: string;
  /** sha256 of the file's bytes, computed at submission (the decode stage checks it). */
  contentHash: string;
  backbone: BackboneIdentity;
  sampling: { policy: SamplingPolicy; size: number; crop: CropMode };
  /** The batch the clip was first submitted with, if any. */
  batchId?: string | undefined;
}

export interface DecodeJobData {
  clip: ClipRef;
}

export interface EmbedJobData {
  clip: ClipRef;
}

export interface ClassifyJobData {
  clip: ClipRef;
  model: { id: string; version: string };
  topK: number;
}

export type WebhookEvent = 'job.completed' | 'job.failed' | 'batch.completed';

export interface WebhookJobData {
  url: string;
  event: WebhookEvent;
  /** The JSON body posted. */
  body: Record<string, unknown>;
}

export interface TrainJobData {
  /** Labelled data (manifest CSV or class folders) readable by the train worker. */
  manifest: string;
  /** Where to save the trained head. */
  out: string;
  options: Record<string, unknown>;
}

/** Every job framewise puts in a queue, keyed by name. */
export type JobItem =
  | { name: JobName.Decode; data: DecodeJobData }
  | { name: JobName.Embed; data: EmbedJobData }
  | { name: JobName.Classify; data: ClassifyJobData }
  | { name: JobName.Webhook; data: WebhookJobData }
  | { name: JobName.Train; data: TrainJobData };

export type JobDataOf<N extends JobName> = Extract<JobItem, { name: N }>['data'];

/** The decode stage's return value: a feature-store hit, or where the decoded frames are. */
export type DecodeJobResult =
  | { hit: true; frames: number; decodeMs: number }
  | { hit: false; artifactKey: string; info: VideoInfo; count: number; size: number; times: number[]; decodeMs: number };

/** The embed stage's return value. */
export interface EmbedJobResult {
  /** True when the features came from the feature store (the decode stage found them). */
  cached: boolean;
  frames: number;
  embedMs: number;
  /** The backbone that embedded the frames (null on a store hit). */
  backbone: BackboneInfo | null;
}

/** The classify stage's return value: the same result `framewise label` prints. */
export type ClassifyJobResult = LabelSuccess;

export type { LabelResult };

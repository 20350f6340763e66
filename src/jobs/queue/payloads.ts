/**
 * Job payloads and return values of queue mode: one discriminated union keyed by job name.
 * Payloads carry ids, paths and small JSON, never frames or tensors (frames go to the artifact
 * store, embeddings to the feature store, both referenced by key).
 */
import type { BackboneIdentity } from '../../ml/backbone-specs.js';
import type { BackboneInfo, FeatureKind } from '../../ml/backbone.js';
import type { HeadOptions, TrainOptions } from '../../ml/head.js';
import type { VideoSummary } from '../../features/feature-store.js';
import type { StreamSpec } from '../../features/stream-keys.js';
import type { StreamId } from '../../features/streams.js';
import type { VideoInfo } from '../../media/ffmpeg.js';
import type { ContentBox } from '../../media/multi-decode.js';
import type { CropMode, SamplingPolicy, WindowsPolicy } from '../../media/sampling.js';
import type { LabelResult, LabelSuccess, WindowResult } from '../label.js';
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
  /** Label window by window ("which action, when", as `label --windows`); absent: one clip-level label. */
  windows?: ClipWindows | undefined;
  /**
   * The model's per-frame streams (its recorded layout, with each keypoint stream's input side)
   * when it reads more than the backbone's rgb features; absent: rgb alone. Every stage computes
   * or reads exactly these.
   */
  streams?: StreamSpec[] | undefined;
}

/** How a windowed clip is labelled: the windows (their frames per window are the head's uniform:N) and the unknown threshold. */
export interface ClipWindows {
  policy: WindowsPolicy;
  /** Unknown threshold of the segments (as `label --threshold`); absent: the model's, else 0.5. */
  threshold?: number | undefined;
  /** As `label --hysteresis`; absent: the default (0.1, at most the threshold). */
  hysteresis?: number | undefined;
  /** As `label --min-segment` (seconds); absent: the window length. */
  minSegmentSec?: number | undefined;
}

export interface DecodeJobData {
  clip: ClipRef;
}

export interface EmbedJobData {
  clip: ClipRef;
  /** Windowed clips: the model, for a video too long for the feature store (its windows are scored in the embed stage). */
  model?: ClassifyJobData['model'];
}

export interface ClassifyJobData {
  clip: ClipRef;
  /** The model version to label with, and its folder (the registry version folder, or FRAMEWISE_MODEL_DIR). */
  model: { id: string; version: string; dir?: string };
  topK: number;
}

export type WebhookEvent = 'job.completed' | 'job.failed' | 'batch.completed';

export interface WebhookJobData {
  url: string;
  event: WebhookEvent;
  /** The JSON body posted. */
  body: Record<string, unknown>;
}

/** A training run as a job: what `runTraining` needs, in JSON (see `src/jobs/queue/trainings.ts`). */
export interface TrainJobData {
  trainingId: string;
  /** Labelled data (manifest CSV or class folders) readable by the train worker. */
  manifest: string;
  /** The folder the manifest's relative paths are relative to (an uploaded CSV's: the first path root). */
  manifestBaseDir?: string | undefined;
  valManifest?: string | undefined;
  /** The registry name the model is saved under (a new version of it). */
  name: string;
  /** Promote the new version (the first version of a name is promoted anyway). */
  promote: boolean;
  options: TrainingRequestOptions;
  createdAt: string;
}

/** Training options a request may set (the same as `framewise train`'s). */
export interface TrainingRequestOptions {
  split?: { fraction?: number; column?: string; valValues?: string[]; groupColumn?: string };
  head?: Partial<HeadOptions>;
  training?: Partial<TrainOptions>;
  feature?: FeatureKind;
  /** e.g. `uniform:16`. */
  sampling?: string;
  baseline?: boolean;
  /** Augmented copies of the training rows: `{jitter: K, flip: true}`. */
  augment?: { jitter?: number; flip?: boolean };
  /** Per-frame streams the head reads (canonical order), or `auto`. @defaultValue the training default, DEFAULT_STREAMS */
  streams?: StreamId[] | 'auto';
}

/** A batch's listing (ingest.ts): what to list and how to queue it is the batch's record (PostgreSQL `batches`). */
export interface IngestJobData {
  batchId: string;
}

/** Every job framewise puts in a queue, keyed by name. */
export type JobItem =
  | { name: JobName.Decode; data: DecodeJobData }
  | { name: JobName.Embed; data: EmbedJobData }
  | { name: JobName.Classify; data: ClassifyJobData }
  | { name: JobName.Webhook; data: WebhookJobData }
  | { name: JobName.Train; data: TrainJobData }
  | { name: JobName.Ingest; data: IngestJobData };

export type JobDataOf<N extends JobName> = Extract<JobItem, { name: N }>['data'];

/** The decode stage's return value: a feature-store hit, or where the decoded frames are. */
export type DecodeJobResult =
  | { hit: true; frames: number; decodeMs: number }
  | { hit: false; artifactKey: string; info: VideoInfo; count: number; size: number; times: number[]; decodeMs: number };

/** One decoded output of a clip over several streams, in the artifact store (`streamArtifactKey`). */
export interface DecodedOutput {
  /** rgb and motion: the backbone's geometry; letterbox: the keypoint streams' squares. */
  name: 'rgb' | 'motion' | 'letterbox';
  /** Side of the square frames. */
  size: number;
  artifactKey: string;
  /** Letterboxed squares: where the picture lies in them. */
  content?: ContentBox;
}

/**
 * The decode stage's return value for a clip over several streams (`stream-stages.ts`): every
 * stream in the feature store, or the outputs the missing streams need (one decode), each in
 * the artifact store; `hits` says which streams the store already held.
 */
export type StreamsDecodeJobResult =
  | { streams: true; hit: true; frames: number; decodeMs: number }
  | { streams: true; hit: false; hits: boolean[]; info: VideoInfo; count: number; times: number[]; outputs: DecodedOutput[]; decodeMs: number };

/**
 * The decode stage's return value for a windowed clip: no frames (the embed stage decodes as it
 * embeds, see `window-stages.ts`), only whether the pass is in the feature store, else the probed video.
 */
export type WindowsDecodeJobResult = { windows: true; hit: true; decodeMs: number } | { windows: true; hit: false; info: VideoInfo; decodeMs: number };

/** The embed stage's return value. */
export interface EmbedJobResult {
  /** True when the features came from the feature store (the decode stage found them). */
  cached: boolean;
  /** Frames embedded (windowed clips: 0 when none were). */
  frames: number;
  embedMs: number;
  /** The backbone that embedded the frames (null on a store hit). */
  backbone: BackboneInfo | null;
  /** Windowed clips: where the classify stage finds the windows. */
  windows?: WindowsEmbedOutcome;
}

/**
 * Where a windowed clip's windows come from: the pass's embeddings in the feature store (the
 * classify stage scores them), or, for a video too long for the store, the window scores the
 * embed stage computed (a few numbers per window: the result lists them anyway).
 */
export type WindowsEmbedOutcome = { stored: true } | { stored: false; video: VideoSummary; scores: WindowResult[] };

/** The classify stage's return value: the same result `framewise label` prints. */
export type ClassifyJobResult = LabelSuccess;

export type { LabelResult };

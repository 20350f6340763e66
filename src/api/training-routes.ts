/**
 * Training the head over HTTP:
 *
 *   POST   /v1/trainings              labelled data on the server ({manifest}) or a CSV in the body ({csv}) → 202 {trainingId}
 *   GET    /v1/trainings              the latest trainings
 *   GET    /v1/trainings/:id          state, progress (every epoch so far), result (the model version) or error
 *   GET    /v1/trainings/:id/events   SSE: `progress` (feature extraction), `epoch` (one per epoch), `state`, then `result`, `failed` or `cancelled`
 *   DELETE /v1/trainings/:id          cancel (a running training keeps its best epoch as a version that is not promoted)
 *
 * Every file a training reads must be within FRAMEWISE_PATH_ROOTS; a manifest that names a file
 * elsewhere is refused as a whole (403). Relative paths of an uploaded CSV are relative to the
 * first root. A train worker (`framewise worker train`) runs the jobs.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../config/index.js';
import { FramewiseError, toStorageError } from '../errors/index.js';
import { readLabelledData } from '../features/inputs.js';
import { DEFAULT_STREAMS, formatStreams, parseStreams, STREAM_IDS } from '../features/streams.js';
import type { PathGuard } from '../jobs/queue/batches.js';
import type { TrainingRequestOptions } from '../jobs/queue/payloads.js';
import type { QueueRuntime } from '../jobs/queue/runtime.js';
import { cancelTraining, listTrainings, submitTraining, trainingStatus, type TrainingStatus } from '../jobs/queue/trainings.js';
import { FEATURE_KINDS } from '../ml/backbone.js';
import { HEAD_OPTIONS_SCHEMA, TRAIN_OPTIONS_SCHEMA } from '../ml/head.js';
import { MODEL_NAME_PATTERN } from '../ml/registry.js';
import { parseSampling } from '../media/sampling.js';
import { ID_PARAMS } from './schemas.js';
import { ensureDir } from './uploads.js';
import { streamPolled, type EventStream } from './sse.js';

export interface TrainingRoutesOptions {
  runtime: QueueRuntime;
  config: Config;
  guard: PathGuard;
  /** SSE polling interval. @defaultValue 200 */
  ssePollMs?: number;
}

interface TrainingBody extends Omit<TrainingRequestOptions, 'streams'> {
  /** `rgb,motion` or `auto`. */
  streams?: string;
  name: string;
  manifest?: string;
  csv?: string;
  valManifest?: string;
  promote?: boolean;
}

export const TRAINING_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: MODEL_NAME_PATTERN.source, description: 'the registry name: the trained head becomes a new version of it' },
    manifest: { type: 'string', minLength: 1, description: 'labelled data on the server (a CSV with path,label or a folder of class folders), within FRAMEWISE_PATH_ROOTS' },
    csv: { type: 'string', minLength: 1, description: 'or the CSV itself (path,label[,…]); relative paths are relative to the first of FRAMEWISE_PATH_ROOTS' },
    valManifest: { type: 'string', minLength: 1, description: 'separate validation data on the server (else a split of the training data)' },
    promote: { type: 'boolean', default: false, description: 'promote the new version (the first version of a name is promoted anyway)' },
    split: {
      type: 'object',
      additionalProperties: false,
      properties: { fraction: { type: 'number', minimum: 0, maximum: 0.9, description: 'greater than 0' }, column: { type: 'string' }, valValues: { type: 'array', items: { type: 'string' } }, groupColumn: { type: 'string' } },
      description: 'validation rows: a stratified share (fraction, default 0.2), the rows whose `column` has one of `valValues`, or a group-aware share (`groupColumn`)',
    },
    head: { type: 'object', additionalProperties: true, description: 'head options as `framewise train` takes them: cell, units, layers, bidirectional, dropout, projection, pooling, temporalDiff, fusion, summary' },
    training: { type: 'object', additionalProperties: true, description: 'epochs, batchSize, learningRate, clipNorm, patience, classWeights, balancedSampling, seed, members' },
    feature: { type: 'string', enum: [...FEATURE_KINDS], description: 'per-frame feature (default: the training default, see docs/training.md)' },
    streams: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description: `per-frame streams the head reads, as \`framewise train --streams\`: a comma-separated subset of ${STREAM_IDS.join(', ')} (e.g. \`rgb,motion\`), or \`auto\` (each candidate set tried on validation splits); default \`${formatStreams(DEFAULT_STREAMS)}\`. The queue's workers and \`label --windows\` compute exactly the model's streams`,
    },
    sampling: { type: 'string', description: 'e.g. uniform:16 (default)' },
    baseline: { type: 'boolean', description: 'also train the mean-pooling baseline and record its validation figures (default true)' },
    augment: {
      type: 'object',
      additionalProperties: false,
      properties: { jitter: { type: 'integer', minimum: 0, maximum: 16 }, flip: { type: 'boolean' } },
      description: 'augmented copies of the training rows, made at extraction and stored: `jitter` copies with jittered frame positions, and/or a mirrored copy (`flip`; left/right labels swap)',
    },
  },
} as const;

/** Validate the options fastify's schema leaves open (head, training, sampling) with the same rules as the CLI. */
function checkOptions(body: TrainingBody): void {
  const problems: string[] = [];
  const check = (what: string, r: z.ZodSafeParseResult<unknown>): void => {
    if (!r.success) problems.push(...r.error.issues.map((i) => `${what}.${i.path.join('.')}: ${i.message}`));
  };
  if (body.head) check('head', HEAD_OPTIONS_SCHEMA.strict().safeParse(body.head));
  if (body.training) check('training', TRAIN_OPTIONS_SCHEMA.strict().safeParse(body.training));
  if (body.sampling !== undefined) {
    try {
      parseSampling(body.sampling);
    } catch (err) {
      problems.push(`sampling: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if ((body.manifest === undefined) === (body.csv === undefined)) problems.push('give exactly one of `manifest` or `csv`');
  if (body.valManifest !== undefined && (body.split?.column !== undefined || body.split?.groupColumn !== undefined)) problems.push('use either `valManifest` or a column split, not both');
  if (body.split?.column !== undefined && !body.split.valValues?.length) problems.push('split.column needs split.valValues');
  // the schema says minimum 0 (an OpenAPI 3.0 document cannot carry draft-07's numeric exclusiveMinimum)
  if (body.split?.fraction !== undefined && body.split.fraction <= 0) problems.push('split.fraction must be greater than 0');
  let streams = formatStreams(DEFAULT_STREAMS);
  if (body.streams !== undefined) {
    try {
      streams = body.streams.trim() === 'auto' ? 'auto' : parseStreams(body.streams).join(',');
    } catch (err) {
      problems.push(`streams: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  // augmented copies are made of rgb frames only (as `framewise train --augment`)
  if (body.augment && ((body.augment.jitter ?? 0) > 0 || body.augment.flip) && streams !== 'rgb') problems.push(`augment works with the rgb stream only: pass "streams": "rgb" with it (the streams here: ${streams})`);
  if (problems.length > 0) throw new FramewiseError('FW_ERR_REQUEST_INVALID', problems.join('; '));
}

/** Every file the labelled data names must be within the roots (missing files are the training's per-row errors). */
async function checkDataPaths(source: string, guard: PathGuard, baseDir?: string): Promise<void> {
  const inputs = await readLabelledData(source, undefined, baseDir);
  for (const item of inputs.items) {
    try {
      await guard(item.path);
    } catch (err) {
      if (err instanceof FramewiseError && err.code === 'FW_ERR_INPUT_NOT_FOUND') continue;
      throw err instanceof FramewiseError && err.code === 'FW_ERR_PATH_FORBIDDEN' ? new FramewiseError('FW_ERR_PATH_FORBIDDEN', `the training data names ${item.source}, which is outside FRAMEWISE_PATH_ROOTS`) : err;
    }
  }
}

/** SSE for one training: `progress`, `epoch` (each new one), `state`, then the final event. */
async function streamTrainingEvents(rt: QueueRuntime, id: string, req: FastifyRequest, reply: FastifyReply, pollMs: number): Promise<void> {
  const first = await trainingStatus(rt, id); // 404 before the stream starts
  let lastState = '';
  let lastItems = '';
  let epochsSent = 0;
  const emit = (stream: EventStream, status: TrainingStatus): boolean => {
    const p = status.progress;
    const items = JSON.stringify([p.phase, p.items]);
    if (items !== lastItems) {
      lastItems = items;
      stream.send('progress', { trainingId: id, phase: p.phase, items: p.items, maxEpochs: p.maxEpochs });
    }
    for (; epochsSent < p.epochs.length; epochsSent++) stream.send('epoch', { trainingId: id, ...p.epochs[epochsSent] });
    if (status.state !== lastState) {
      lastState = status.state;
      stream.send('state', { trainingId: id, state: status.state });
    }
    if (status.state === 'completed' || status.state === 'failed' || status.state === 'cancelled') {
      stream.send(status.state === 'completed' ? 'result' : status.state, { trainingId: id, state: status.state, result: status.result, error: status.error });
      return true;
    }
    return false;
  };
  await streamPolled(req, reply, first, () => trainingStatus(rt, id), emit, { trainingId: id }, { pollMs });
}

export const trainingRoutes: FastifyPluginAsync<TrainingRoutesOptions> = async (app, opts) => {
  const { runtime: rt, config, guard } = opts;

  app.post<{ Body: TrainingBody }>(
    '/v1/trainings',
    { schema: { summary: 'Train the head on labelled data (a new version of `name`): a job for the train worker', tags: ['trainings'], body: TRAINING_BODY } },
    async (req, reply) => {
      const b = req.body;
      checkOptions(b);
      let manifest: string;
      let manifestBaseDir: string | undefined;
      if (b.csv !== undefined) {
        // the CSV is kept with the server's data (by content), its relative paths taken from the first root
        const dir = join(config.queue.dataDir, 'trainings');
        manifest = join(dir, `manifest-${createHash('sha256').update(b.csv).digest('hex').slice(0, 16)}.csv`);
        try {
          await ensureDir(dir);
          await writeFile(manifest, b.csv);
        } catch (err) {
          throw toStorageError(err, 'the training CSV (FRAMEWISE_DATA_DIR/trainings)');
        }
        manifestBaseDir = config.queue.pathRoots[0];
        if (manifestBaseDir === undefined) throw new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'reading server paths is disabled (FRAMEWISE_PATH_ROOTS is not set)');
      } else manifest = await guard(b.manifest as string);
      await checkDataPaths(manifest, guard, manifestBaseDir);
      const valManifest = b.valManifest !== undefined ? await guard(b.valManifest) : undefined;
      if (valManifest !== undefined) await checkDataPaths(valManifest, guard);
      const options: TrainingRequestOptions = {
        ...(b.split ? { split: b.split } : {}),
        ...(b.head ? { head: b.head } : {}),
        ...(b.training ? { training: b.training } : {}),
        ...(b.feature ? { feature: b.feature } : {}),
        ...(b.sampling ? { sampling: b.sampling } : {}),
        ...(b.baseline !== undefined ? { baseline: b.baseline } : {}),
        ...(b.augment ? { augment: b.augment } : {}),
        ...(b.streams !== undefined ? { streams: b.streams.trim() === 'auto' ? ('auto' as const) : parseStreams(b.streams) } : {}),
      };
      const { trainingId } = await submitTraining(rt, { manifest, manifestBaseDir, valManifest, name: b.name, promote: b.promote === true, options });
      void reply.header('location', `/v1/trainings/${trainingId}`);
      return reply.status(202).send({ trainingId, state: 'queued', name: b.name });
    },
  );

  app.get('/v1/trainings', { schema: { summary: 'The latest trainings, newest first', tags: ['trainings'] } }, async () => ({ trainings: await listTrainings(rt) }));

  app.get<{ Params: { id: string } }>('/v1/trainings/:id', { schema: { summary: 'A training: state, progress (every epoch so far), the model version it made, or its error', tags: ['trainings'], params: ID_PARAMS } }, async (req) =>
    trainingStatus(rt, req.params.id),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/trainings/:id/events',
    { schema: { summary: 'Server-sent events: `progress`, one `epoch` per epoch (loss, acc, valLoss, valAcc), `state`, then `result`, `failed` or `cancelled`', tags: ['trainings'], params: ID_PARAMS } },
    async (req, reply) => streamTrainingEvents(rt, req.params.id, req, reply, opts.ssePollMs ?? 200),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/trainings/:id',
    { schema: { summary: 'Cancel a training: a waiting one is removed; a running one stops and keeps its best epoch so far as a version (not promoted)', tags: ['trainings'], params: ID_PARAMS } },
    async (req) => cancelTraining(rt, req.params.id),
  );
};

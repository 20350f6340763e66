/**
 * The model registry over HTTP (the API equivalents of `framewise models list|show|promote|rm`):
 *
 *   GET    /v1/models                                    every model and its versions, and the model jobs use now
 *   GET    /v1/models/:name                              one model
 *   POST   /v1/models/:name/promote {version}            make `version` the one NAME resolves to
 *   DELETE /v1/models/:name/versions/:version[?force=true]
 *   GET    /v1/models/:name/versions/:version/report     its validation report (HTML; ?format=json for report.json)
 *
 * Promoting changes the model of new queue jobs when FRAMEWISE_MODEL names this model.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import { currentModelInfo } from '../jobs/queue/model-info.js';
import { formatSampling } from '../media/sampling.js';
import { ModelRegistry, parseModelRef, type VersionInfo } from '../ml/registry.js';

export interface ModelRoutesOptions {
  config: Config;
}

export interface VersionSummary {
  version: string;
  created: string;
  promoted: boolean;
  labels: string[];
  backbone: { id: string; version: string; featureKind: string; dim: number };
  sampling: string;
  head: Record<string, unknown>;
  metrics: Record<string, unknown>;
  unknownThreshold: number;
  training: Record<string, unknown>;
  /** The validation report of this version, when it has one. */
  reportUrl: string | null;
}

export interface ModelSummary {
  name: string;
  promoted: string | null;
  /** Newest first. */
  versions: VersionSummary[];
}

const NAME_PARAMS = { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } as const;
const VERSION_PARAMS = { type: 'object', required: ['name', 'version'], properties: { name: { type: 'string' }, version: { type: 'string' } } } as const;

/** What a client needs of a version's metadata (no server paths). */
const TRAINING_FIELDS = ['trainN', 'valN', 'epochsRun', 'bestEpoch', 'epochs', 'manifestSha256', 'dataHash', 'split', 'cancelled'] as const;

async function hasReport(dir: string): Promise<boolean> {
  return access(join(dir, 'report.json')).then(
    () => true,
    () => false,
  );
}

async function summarizeVersion(v: VersionInfo): Promise<VersionSummary> {
  const m = v.metadata;
  const training = Object.fromEntries(TRAINING_FIELDS.flatMap((k) => (m.training[k] !== undefined ? [[k, m.training[k]]] : [])));
  return {
    version: v.version,
    created: v.created,
    promoted: v.promoted,
    labels: m.labels,
    backbone: m.backbone,
    sampling: formatSampling(m.sampling.policy),
    head: m.head,
    metrics: m.metrics,
    unknownThreshold: m.unknownThreshold ?? 0,
    training,
    reportUrl: (await hasReport(v.dir)) ? `/v1/models/${encodeURIComponent(v.name)}/versions/${encodeURIComponent(v.version)}/report` : null,
  };
}

/** A model of the registry (callers check the name: `checkRef`). */
async function summarizeModel(registry: ModelRegistry, name: string): Promise<ModelSummary> {
  const versions = await registry.versions(name);
  if (versions.length === 0) throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no model '${name}' in the registry`);
  return {
    name,
    promoted: versions.find((v) => v.promoted)?.version ?? null,
    versions: await Promise.all([...versions].reverse().map(summarizeVersion)),
  };
}

/** A registry reference from the URL: a bad name or version is a request error. */
function checkRef(name: string, version?: string): void {
  try {
    parseModelRef(version === undefined ? name : `${name}@${version}`);
  } catch (err) {
    throw new FramewiseError('FW_ERR_REQUEST_INVALID', err instanceof Error ? err.message : String(err));
  }
}

export const modelRoutes: FastifyPluginAsync<ModelRoutesOptions> = async (app, opts) => {
  const registry = ModelRegistry.fromConfig(opts.config);

  app.get('/v1/models', { schema: { summary: 'The model registry: every model, its versions and metrics, and the model queue jobs use now', tags: ['models'] } }, async () => {
    const models = await Promise.all((await registry.names()).map((n) => summarizeModel(registry, n)));
    let current: { ref: string | null; id: string; version: string } | { ref: string | null; error: { code: string; message: string } };
    try {
      const info = await currentModelInfo(opts.config);
      current = { ref: opts.config.model ?? null, ...info.model };
    } catch (err) {
      const e = err instanceof FramewiseError ? err : new FramewiseError('FW_ERR_INTERNAL', String(err));
      current = { ref: opts.config.model ?? null, error: { code: e.code, message: e.message } };
    }
    return { current, models };
  });

  app.get<{ Params: { name: string } }>('/v1/models/:name', { schema: { summary: 'One model: its versions (newest first), metrics and which is promoted', tags: ['models'], params: NAME_PARAMS } }, async (req) => {
    checkRef(req.params.name);
    return summarizeModel(registry, req.params.name);
  });

  app.post<{ Params: { name: string }; Body: { version: string } }>(
    '/v1/models/:name/promote',
    {
      schema: {
        summary: 'Promote a version: NAME resolves to it (and new queue jobs use it when FRAMEWISE_MODEL is NAME)',
        tags: ['models'],
        params: NAME_PARAMS,
        body: { type: 'object', required: ['version'], additionalProperties: false, properties: { version: { type: 'string', minLength: 1 } } },
      },
    },
    async (req) => {
      checkRef(req.params.name, req.body.version);
      await registry.promote(req.params.name, req.body.version);
      return summarizeModel(registry, req.params.name);
    },
  );

  app.delete<{ Params: { name: string; version: string }; Querystring: { force?: boolean } }>(
    '/v1/models/:name/versions/:version',
    {
      schema: {
        summary: 'Remove a version (the promoted one only with ?force=true: the model then has no promoted version)',
        tags: ['models'],
        params: VERSION_PARAMS,
        querystring: { type: 'object', additionalProperties: false, properties: { force: { type: 'boolean', default: false } } },
      },
    },
    async (req) => {
      checkRef(req.params.name, req.params.version);
      const r = await registry.remove(req.params.name, req.params.version, { force: req.query.force === true });
      return { name: req.params.name, version: req.params.version, removed: true, wasPromoted: r.wasPromoted };
    },
  );

  app.get<{ Params: { name: string; version: string }; Querystring: { format?: 'html' | 'json' } }>(
    '/v1/models/:name/versions/:version/report',
    {
      schema: {
        summary: "A version's validation report: self-contained HTML (confusion matrix, calibration, contact sheets of the hardest mistakes) or its JSON",
        tags: ['models'],
        params: VERSION_PARAMS,
        querystring: { type: 'object', additionalProperties: false, properties: { format: { type: 'string', enum: ['html', 'json'], default: 'html' } } },
      },
    },
    async (req, reply) => {
      checkRef(req.params.name, req.params.version);
      const dir = await registry.resolve({ name: req.params.name, version: req.params.version });
      const json = req.query.format === 'json';
      let body: Buffer;
      try {
        body = await readFile(join(dir, json ? 'report.json' : 'report.html'));
      } catch (err) {
        throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `${req.params.name}@${req.params.version} has no report (it was trained without validation data)`, { cause: err });
      }
      if (json) return reply.type('application/json; charset=utf-8').send(body);
      // the report is self-contained: inline styles, data: images, no scripts
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', "default-src 'none'; img-src data:; style-src 'unsafe-inline'")
        .header('x-content-type-options', 'nosniff')
        .send(body);
    },
  );
};

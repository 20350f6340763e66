/**
 * What a producer needs to know about the current model without loading its weights (FRAMEWISE_MODEL,
 * a registry name resolving to its promoted version, else FRAMEWISE_MODEL_DIR): the head's
 * metadata (id, version, labels, backbone, sampling), re-read when metadata.json changes, and
 * the backbone identity that goes into job ids and feature-store keys.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../../config/index.js';
import { FramewiseError } from '../../errors/index.js';
import { streamSpecs, type StreamSpec } from '../../features/stream-keys.js';
import { backboneIdentity, type BackboneIdentity } from '../../ml/backbone-specs.js';
import type { BackboneId } from '../../ml/backbone.js';
import { resolveModel } from '../../ml/registry.js';
import { HEAD_METADATA_SCHEMA, type HeadMetadata } from '../../ml/head.js';
import type { ClipRef } from './payloads.js';

export interface ModelInfo {
  dir: string;
  metadata: HeadMetadata;
  model: { id: string; version: string };
  backbone: BackboneIdentity;
  sampling: ClipRef['sampling'];
  /** The per-frame streams the model reads (its recorded layout; rgb alone when it records none). */
  streams: StreamSpec[];
}

const cache = new Map<string, { mtimeMs: number; info: ModelInfo }>();

/** The current model's description (cached while metadata.json is unchanged). */
export async function readModelInfo(config: Config, dir = config.modelDir): Promise<ModelInfo> {
  const file = join(dir, 'metadata.json');
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(file)).mtimeMs;
  } catch (err) {
    throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no model at ${dir} (metadata.json missing); set FRAMEWISE_MODEL_DIR`, { cause: err });
  }
  const hit = cache.get(dir);
  if (hit && hit.mtimeMs === mtimeMs) return hit.info;
  let metadata: HeadMetadata;
  try {
    metadata = HEAD_METADATA_SCHEMA.parse(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    throw new FramewiseError('FW_ERR_MODEL_INVALID', `invalid metadata.json in ${dir}: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`, { cause: err });
  }
  const backbone = await backboneIdentity(metadata.backbone.id as BackboneId, metadata.backbone.featureKind, config.tfhubMobilenetUrl);
  const info: ModelInfo = {
    dir,
    metadata,
    model: { id: metadata.id, version: metadata.version },
    backbone,
    sampling: { policy: metadata.sampling.policy, size: metadata.sampling.size, crop: metadata.sampling.crop },
    streams: streamSpecs(metadata.streams ?? [{ id: 'rgb', version: `${metadata.backbone.id}@${metadata.backbone.version}:${metadata.backbone.featureKind}`, dim: metadata.backbone.dim, masked: false }]),
  };
  cache.set(dir, { mtimeMs, info });
  return info;
}

/**
 * The model queue mode labels with now: FRAMEWISE_MODEL (a registry name resolves to its
 * promoted version, looked up on every call), else FRAMEWISE_MODEL_DIR.
 */
export async function currentModelInfo(config: Config): Promise<ModelInfo> {
  return readModelInfo(config, await resolveModel(config.model, config));
}

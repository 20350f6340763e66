/**
 * Offline weights: the MobileNetV2 models that the `nsfwjs` npm package (MIT) ships inside its
 * tarball as base64 strings. We read them through the package's own `exports` entries and hand
 * TensorFlow.js a ready `ModelArtifacts`, so nothing is fetched from the network.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import { FramewiseError } from '../errors/index.js';

export type NsfwjsModelName = 'mobilenet_v2_mid' | 'mobilenet_v2';

interface NsfwjsModelDefinition {
  name: string;
  numOfWeightBundles: number;
  options?: { type?: 'graph' | 'layers' };
  modelJson: () => Promise<{ default: ModelJson }>;
  weightBundles: Array<() => Promise<{ default: string }>>;
}

export interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology: unknown;
  weightsManifest: Array<{ paths: string[]; weights: tfTypes.io.WeightsManifestEntry[] }>;
}

export interface NsfwjsArtifacts {
  /** 'graph' (tf.loadGraphModel) or 'layers' (tf.loadLayersModel). */
  kind: 'graph' | 'layers';
  artifacts: tfTypes.io.ModelArtifacts;
  /** Version of the nsfwjs package the weights came from (part of the backbone version). */
  packageVersion: string;
}

async function importDefinition(name: NsfwjsModelName): Promise<NsfwjsModelDefinition> {
  try {
    if (name === 'mobilenet_v2_mid') {
      const mod = (await import('nsfwjs/models/mobilenet_v2_mid')) as unknown as { MobileNetV2MidModel: NsfwjsModelDefinition };
      return mod.MobileNetV2MidModel;
    }
    const mod = (await import('nsfwjs/models/mobilenet_v2')) as unknown as { MobileNetV2Model: NsfwjsModelDefinition };
    return mod.MobileNetV2Model;
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `cannot load the nsfwjs weights '${name}' (is the nsfwjs package installed?)`, { cause: err });
  }
}

export async function nsfwjsVersion(): Promise<string> {
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const { readFile } = await import('node:fs/promises');
  const { dirname, join } = await import('node:path');
  // the exports map hides package.json; resolve the entry point and walk up.
  const entry = require.resolve('nsfwjs');
  let dir = dirname(entry);
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'nsfwjs' && pkg.version) return pkg.version;
    } catch {
      /* keep walking */
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

const cache = new Map<NsfwjsModelName, Promise<NsfwjsArtifacts>>();

/** The model artifacts (topology + decoded weights) of one nsfwjs model, cached per process. */
export function loadNsfwjsArtifacts(name: NsfwjsModelName): Promise<NsfwjsArtifacts> {
  let pending = cache.get(name);
  if (!pending) {
    pending = readArtifacts(name);
    cache.set(name, pending);
    pending.catch(() => cache.delete(name));
  }
  return pending;
}

async function readArtifacts(name: NsfwjsModelName): Promise<NsfwjsArtifacts> {
  const def = await importDefinition(name);
  const json = (await def.modelJson()).default;
  const shards: Buffer[] = [];
  for (const load of def.weightBundles) shards.push(Buffer.from((await load()).default, 'base64'));
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  const artifacts: tfTypes.io.ModelArtifacts = {
    modelTopology: json.modelTopology as tfTypes.io.ModelArtifacts['modelTopology'],
    weightSpecs,
    weightData,
  };
  if (json.format !== undefined) artifacts.format = json.format;
  if (json.generatedBy !== undefined) artifacts.generatedBy = json.generatedBy;
  if (json.convertedBy != null) artifacts.convertedBy = json.convertedBy;
  return { kind: def.options?.type === 'graph' ? 'graph' : 'layers', artifacts, packageVersion: await nsfwjsVersion() };
}

/**
 * The converted ONNX backbones, cached on disk:
 *   `${cacheDir}/onnx/<id>-<nsfwjs version>-v<converter version>.onnx` + `<same>.json` (sidecar).
 *
 * Conversion is deterministic (same weights and converter → same bytes), which is what makes the
 * cache safe without locks: every writer writes a private temporary file and renames it into
 * place (rename is atomic on one file system), so a reader sees either no file or a complete
 * one, and two processes converting at once both end with the same valid file. The sidecar's
 * sha256 is checked on every open; a mismatch (truncated copy, disk error, hand edit) reconverts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FramewiseError, toStorageError } from '../../errors/index.js';
import { makeDir } from '../../errors/make-dir.js';
import type { BackboneId } from '../backbone.js';
import { loadNsfwjsArtifacts, nsfwjsVersion, type NsfwjsModelName } from '../pretrained-weights.js';
import { CONVERTER_VERSION, convertToOnnxDetailed } from './convert.js';
import { ONNX_OPSET } from './onnx-proto.js';

export interface OnnxModelFile {
  path: string;
  sha256: string;
  /** Version of the weights, `nsfwjs@<version>` (the same string the tfjs engine reports). */
  version: string;
  converterVersion: number;
  inputSize: number;
  channels: number;
  mapSize: number;
}

/** What the `.json` next to a cached model holds. */
export interface OnnxSidecar {
  format: 'framewise-onnx-backbone';
  sha256: string;
  bytes: number;
  backbone: NsfwjsModelName;
  source: { package: 'nsfwjs'; version: string; model: NsfwjsModelName };
  converterVersion: number;
  opset: number;
  inputSize: number;
  channels: number;
  mapSize: number;
  createdAt: string;
}

export type CacheLog = (level: 'debug' | 'info' | 'warn', msg: string) => void;

const CONVERTIBLE: readonly NsfwjsModelName[] = ['mobilenet_v2_mid', 'mobilenet_v2'];

function convertibleId(id: BackboneId): NsfwjsModelName {
  if (!(CONVERTIBLE as readonly string[]).includes(id)) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `the onnx engine cannot convert backbone '${id}'; it converts ${CONVERTIBLE.join(', ')}`);
  }
  return id as NsfwjsModelName;
}

/** Where the model for this backbone, weights version and converter version lives. */
export function onnxCachePath(id: NsfwjsModelName, cacheDir: string, weightsVersion: string): string {
  const safe = weightsVersion.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(cacheDir, 'onnx', `${id}-${safe}-v${CONVERTER_VERSION}.onnx`);
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Write `bytes` to `path` through a private temporary file + fsync + rename (atomic replace). */
export async function writeAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  await makeDir(dirname(path));
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync(); // the rename must never publish a file whose data is still in flight
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function parseSidecar(text: string): OnnxSidecar | undefined {
  try {
    const s = JSON.parse(text) as Partial<OnnxSidecar>;
    const ok =
      s.format === 'framewise-onnx-backbone' &&
      typeof s.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(s.sha256) &&
      typeof s.converterVersion === 'number' &&
      typeof s.inputSize === 'number' &&
      typeof s.channels === 'number' &&
      typeof s.mapSize === 'number' &&
      typeof s.source?.version === 'string';
    return ok ? (s as OnnxSidecar) : undefined;
  } catch {
    return undefined;
  }
}

/** The cached model if it is there and its bytes match the sidecar's checksum; why not otherwise. */
async function verifyCached(path: string, weightsVersion: string): Promise<{ sidecar: OnnxSidecar } | { reason: string }> {
  let sidecarText: string;
  let bytes: Buffer;
  try {
    sidecarText = await readFile(`${path}.json`, 'utf8');
    bytes = await readFile(path);
  } catch {
    return { reason: 'not cached' };
  }
  const sidecar = parseSidecar(sidecarText);
  if (!sidecar) return { reason: 'sidecar unreadable' };
  if (sidecar.converterVersion !== CONVERTER_VERSION || sidecar.source.version !== weightsVersion) return { reason: 'sidecar for another version' };
  const actual = sha256(bytes);
  if (actual !== sidecar.sha256) return { reason: `checksum mismatch (file ${actual.slice(0, 12)}…, sidecar ${sidecar.sha256.slice(0, 12)}…)` };
  return { sidecar };
}

function toResult(path: string, s: OnnxSidecar): OnnxModelFile {
  return {
    path,
    sha256: s.sha256,
    version: `nsfwjs@${s.source.version}`,
    converterVersion: s.converterVersion,
    inputSize: s.inputSize,
    channels: s.channels,
    mapSize: s.mapSize,
  };
}

async function convertAndStore(id: NsfwjsModelName, path: string): Promise<OnnxModelFile> {
  const source = await loadNsfwjsArtifacts(id);
  const conv = convertToOnnxDetailed(source, { source: `nsfwjs@${source.packageVersion} ${id}` });
  const sidecar: OnnxSidecar = {
    format: 'framewise-onnx-backbone',
    sha256: sha256(conv.model),
    bytes: conv.model.byteLength,
    backbone: id,
    source: { package: 'nsfwjs', version: source.packageVersion, model: id },
    converterVersion: CONVERTER_VERSION,
    opset: ONNX_OPSET,
    inputSize: conv.inputSize,
    channels: conv.channels,
    mapSize: conv.mapSize,
    createdAt: new Date().toISOString(),
  };
  try {
    // model first, sidecar second: a sidecar never points at a model that is not there yet
    await writeAtomic(path, conv.model);
    await writeAtomic(`${path}.json`, `${JSON.stringify(sidecar, null, 2)}\n`);
  } catch (err) {
    // a full or read-only cache folder is a storage error (the same for every file: it stops a run);
    // any other write failure leaves no backbone to run
    throw toStorageError(err, 'the converted ONNX model to the cache folder', 'FW_ERR_BACKBONE_UNAVAILABLE');
  }
  return toResult(path, sidecar);
}

const inFlight = new Map<string, Promise<OnnxModelFile>>();

/**
 * The ONNX model of a backbone, converted on first use and verified (sha256) on every later one.
 * Throws FW_ERR_BACKBONE_UNAVAILABLE for backbones the converter does not handle,
 * FW_ERR_ONNX_UNSUPPORTED_OP when the weights contain an op it does not know, and
 * FW_ERR_STORAGE_FULL / FW_ERR_STORAGE_READONLY when the converted model cannot be written.
 */
export async function ensureOnnxModel(backboneId: BackboneId, cacheDir: string, log?: CacheLog): Promise<OnnxModelFile> {
  const id = convertibleId(backboneId);
  const packageVersion = await nsfwjsVersion(); // no weight decode on a cache hit
  const path = onnxCachePath(id, cacheDir, packageVersion);
  let pending = inFlight.get(path);
  if (!pending) {
    pending = (async () => {
      const cached = await verifyCached(path, packageVersion);
      if ('sidecar' in cached) return toResult(path, cached.sidecar);
      log?.(cached.reason === 'not cached' ? 'info' : 'warn', `onnx: converting ${id} (nsfwjs@${packageVersion}) to ${path}: ${cached.reason}`);
      return convertAndStore(id, path);
    })();
    inFlight.set(path, pending);
    void pending.finally(() => inFlight.delete(path)).catch(() => undefined);
  }
  return pending;
}

/** Write the backbone's ONNX model to `outPath` (atomically), converting it through the cache. For `framewise export --onnx`. */
export async function exportOnnx(backboneId: BackboneId, outPath: string, cacheDir: string, log?: CacheLog): Promise<OnnxModelFile> {
  const model = await ensureOnnxModel(backboneId, cacheDir, log);
  const tmp = join(dirname(outPath), `.${basename(outPath)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    await makeDir(dirname(outPath));
    await copyFile(model.path, tmp);
    const copied = sha256(await readFile(tmp));
    if (copied !== model.sha256) throw new FramewiseError('FW_ERR_INTERNAL', `onnx export: the copy of ${model.path} has a different checksum`);
    await rename(tmp, outPath);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw toStorageError(err, 'the exported ONNX model');
  }
  return { ...model, path: outPath };
}

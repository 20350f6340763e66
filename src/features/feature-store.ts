/**
 * The feature store: per-frame embeddings of a video, cached on disk.
 *
 * Key: (content hash of the file, backbone id + version, feature kind, sampling key). The engine
 * is not part of the key: the onnx and tfjs engines give the same embeddings (parity-tested).
 *
 * File format (`.fwf`, version 2): "FWF2" | uint32 LE header length | header JSON | float32 LE data |
 * sha256 of everything before it (32 bytes) | "FWF$". Writes go to a unique temporary file that is
 * renamed into place, so concurrent writers never leave a half-written entry. Every read checks the
 * whole entry (magic, lengths, checksum, a complete header for the expected key); an entry that
 * fails any check (truncated, bit rot, hand edits, an older format such as FWF1) is dropped and
 * reads as a miss, so it is recomputed: an invalid entry is never trusted and never fatal.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { toStorageError } from '../errors/index.js';
import { makeDir } from '../errors/make-dir.js';
import type { FeatureKind } from '../ml/backbone.js';

export interface FeatureKey {
  /** sha256 of the file's bytes. */
  contentHash: string;
  backboneId: string;
  backboneVersion: string;
  featureKind: FeatureKind;
  /** From `samplingKey(policy, geometry)`. */
  sampling: string;
  /** The per-frame stream (features/streams.ts); absent = `rgb` (keys and paths of rgb features are unchanged). */
  stream?: string;
}

export interface VideoSummary {
  durationSec: number;
  width: number;
  height: number;
  fps: number;
}

export interface FeatureSequence {
  key: FeatureKey;
  /** Number of frames (≤ the policy's length: short clips give fewer). */
  count: number;
  dim: number;
  /** Seconds from the stream start, per frame. */
  times: number[];
  /** count × dim floats. */
  data: Float32Array;
  video: VideoSummary;
  /** Keypoint streams: per frame, 1 when something was seen, 0 when not (the frame's vector is then zero). */
  present?: Uint8Array;
}

const MAGIC = Buffer.from('FWF2');
const END = Buffer.from('FWF$');
const DIGEST_BYTES = 32;

const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]+/g, '_');

export class FeatureStore {
  constructor(readonly root: string) {}

  pathFor(key: FeatureKey): string {
    const h = key.contentHash;
    // streams other than rgb get their own folder level; rgb paths stay where they always were
    const stream = key.stream !== undefined && key.stream !== 'rgb' ? [`stream-${safe(key.stream)}`] : [];
    return join(this.root, 'features', 'v1', ...stream, safe(key.backboneId), safe(key.backboneVersion), key.featureKind, safe(key.sampling), h.slice(0, 2), `${h}.fwf`);
  }

  /**
   * The stored sequence, or undefined: a missing, unreadable or invalid entry is a miss, and an
   * invalid one is removed (best effort) so that the recomputed sequence replaces it.
   */
  async get(key: FeatureKey): Promise<FeatureSequence | undefined> {
    const file = this.pathFor(key);
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch {
      return undefined;
    }
    const seq = decodeEntry(buf, key);
    // invalid: drop it; a folder that cannot be written keeps it, and it stays a miss
    if (!seq) await rm(file, { force: true }).catch(() => undefined);
    return seq;
  }

  /** Whether a valid entry is stored (the whole entry is checked, as `get` does; an invalid one is dropped). */
  async has(key: FeatureKey): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  async put(seq: FeatureSequence): Promise<void> {
    const file = this.pathFor(seq.key);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await makeDir(dirname(file));
      await writeFile(tmp, encodeEntry(seq));
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw toStorageError(err, 'the feature store', 'FW_ERR_FEATURE_STORE');
    }
  }
}

export function encodeEntry(seq: FeatureSequence): Buffer {
  const header = Buffer.from(JSON.stringify({ key: seq.key, count: seq.count, dim: seq.dim, times: seq.times, video: seq.video, ...(seq.present ? { present: Array.from(seq.present) } : {}) }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const data = Buffer.from(seq.data.buffer, seq.data.byteOffset, seq.data.byteLength);
  const body = Buffer.concat([MAGIC, len, header, data]);
  return Buffer.concat([body, createHash('sha256').update(body).digest(), END]);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const KEY_FIELDS = ['contentHash', 'backboneId', 'backboneVersion', 'featureKind', 'sampling'] as const;

type Header = Omit<FeatureSequence, 'data'>;

/** The header if it is complete and well-typed (and names `expected`, when given); else undefined. */
function toHeader(h: unknown, expected: FeatureKey | undefined): Header | undefined {
  if (!isObject(h) || !isObject(h.key) || !isObject(h.video)) return undefined;
  const key = h.key;
  if (!KEY_FIELDS.every((f) => typeof key[f] === 'string' && (expected === undefined || key[f] === expected[f]))) return undefined;
  if (!isCount(h.count) || !isCount(h.dim) || h.dim === 0) return undefined;
  if (!Array.isArray(h.times) || h.times.length !== h.count || !h.times.every(isFiniteNumber)) return undefined;
  const v = h.video;
  if (!isFiniteNumber(v.durationSec) || !isFiniteNumber(v.width) || !isFiniteNumber(v.height) || !isFiniteNumber(v.fps)) return undefined;
  return {
    key: key as unknown as FeatureKey,
    count: h.count,
    dim: h.dim,
    times: h.times as number[],
    video: { durationSec: v.durationSec, width: v.width, height: v.height, fps: v.fps },
  };
}

/** A keypoint stream's presence mask from a header: absent → undefined; invalid (not `count` 0/1 values) → null. */
function toPresent(h: unknown, count: number): Uint8Array | null | undefined {
  if (!isObject(h) || h.present === undefined) return undefined;
  const p = h.present;
  if (!Array.isArray(p) || p.length !== count || !p.every((v) => v === 0 || v === 1)) return null;
  return Uint8Array.from(p as number[]);
}

/**
 * The sequence in an entry, or undefined when the entry is not a whole, valid version-2 entry (for
 * `expected`, when given): wrong magic or length, checksum mismatch, an unparsable or incomplete
 * header, another key.
 */
export function decodeEntry(buf: Buffer, expected?: FeatureKey): FeatureSequence | undefined {
  const min = 8 + DIGEST_BYTES + END.length;
  if (buf.length < min || !buf.subarray(0, 4).equals(MAGIC) || !buf.subarray(buf.length - END.length).equals(END)) return undefined;
  const bodyEnd = buf.length - END.length - DIGEST_BYTES;
  const digest = createHash('sha256').update(buf.subarray(0, bodyEnd)).digest();
  if (!digest.equals(buf.subarray(bodyEnd, bodyEnd + DIGEST_BYTES))) return undefined;
  const hlen = buf.readUInt32LE(4);
  if (8 + hlen > bodyEnd) return undefined;
  let header: Header | undefined;
  let present: Uint8Array | null | undefined;
  try {
    const raw = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8')) as unknown;
    header = toHeader(raw, expected);
    present = header ? toPresent(raw, header.count) : undefined;
  } catch {
    return undefined;
  }
  if (!header || present === null) return undefined;
  // streams other than rgb (an absent stream is rgb)
  if (expected && (header.key.stream ?? 'rgb') !== (expected.stream ?? 'rgb')) return undefined;
  const dataBytes = header.count * header.dim * 4;
  if (8 + hlen + dataBytes !== bodyEnd) return undefined;
  const data = new Float32Array(header.count * header.dim);
  Buffer.from(data.buffer).set(buf.subarray(8 + hlen, bodyEnd));
  return { ...header, data, ...(present ? { present } : {}) };
}

const hashCache = new Map<string, { size: number; mtimeMs: number; hash: string }>();
/** Hashes remembered per process: a worker that labels a million files keeps the latest ones only. */
const HASH_CACHE_MAX = 10_000;

/** sha256 of a file's bytes (streamed), cached per process by (path, size, mtime), the latest {@link HASH_CACHE_MAX}. */
export async function contentHash(path: string): Promise<string> {
  const st = await stat(path);
  const cached = hashCache.get(path);
  if (cached && cached.size === st.size && cached.mtimeMs === st.mtimeMs) return cached.hash;
  const hash = createHash('sha256');
  await new Promise<void>((res, rej) => {
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on('data', (c) => hash.update(c))
      .on('end', () => res())
      .on('error', rej);
  });
  const hex = hash.digest('hex');
  hashCache.delete(path);
  hashCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, hash: hex });
  if (hashCache.size > HASH_CACHE_MAX) hashCache.delete(hashCache.keys().next().value as string);
  return hex;
}

/**
 * The feature store: per-frame embeddings of a video, cached on disk.
 *
 * Key: (content hash of the file, backbone id + version, feature kind, sampling key). The engine
 * is not part of the key: the onnx and tfjs engines give the same embeddings (parity-tested).
 *
 * File format (`.fwf`): "FWF1" | uint32 LE header length | header JSON | float32 LE data | "FWF$".
 * Writes go to a unique temporary file that is renamed into place, so concurrent writers never
 * leave a half-written entry; a file whose length does not match its header (truncated) is a miss.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FramewiseError } from '../errors/index.js';
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

const MAGIC = Buffer.from('FWF1');
const END = Buffer.from('FWF$');

const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]+/g, '_');

export class FeatureStore {
  constructor(readonly root: string) {}

  pathFor(key: FeatureKey): string {
    const h = key.contentHash;
    // streams other than rgb get their own folder level; rgb paths stay where they always were
    const stream = key.stream !== undefined && key.stream !== 'rgb' ? [`stream-${safe(key.stream)}`] : [];
    return join(this.root, 'features', 'v1', ...stream, safe(key.backboneId), safe(key.backboneVersion), key.featureKind, safe(key.sampling), h.slice(0, 2), `${h}.fwf`);
  }

  /** The stored sequence, or undefined (missing, truncated or unreadable entries are misses). */
  async get(key: FeatureKey): Promise<FeatureSequence | undefined> {
    const file = this.pathFor(key);
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch {
      return undefined;
    }
    const seq = decodeEntry(buf, key);
    if (!seq) await rm(file, { force: true }); // truncated or corrupt: drop it, it will be recomputed
    return seq;
  }

  async has(key: FeatureKey): Promise<boolean> {
    try {
      const st = await stat(this.pathFor(key));
      return st.size > 0;
    } catch {
      return false;
    }
  }

  async put(seq: FeatureSequence): Promise<void> {
    const file = this.pathFor(seq.key);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(tmp, encodeEntry(seq));
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new FramewiseError('FW_ERR_FEATURE_STORE', `cannot write the feature store entry ${file}`, { cause: err });
    }
  }
}

export function encodeEntry(seq: FeatureSequence): Buffer {
  const header = Buffer.from(JSON.stringify({ key: seq.key, count: seq.count, dim: seq.dim, times: seq.times, video: seq.video, ...(seq.present ? { present: Array.from(seq.present) } : {}) }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const data = Buffer.from(seq.data.buffer, seq.data.byteOffset, seq.data.byteLength);
  return Buffer.concat([MAGIC, len, header, data, END]);
}

export function decodeEntry(buf: Buffer, expected?: FeatureKey): FeatureSequence | undefined {
  if (buf.length < 12 || !buf.subarray(0, 4).equals(MAGIC) || !buf.subarray(buf.length - 4).equals(END)) return undefined;
  const hlen = buf.readUInt32LE(4);
  if (8 + hlen > buf.length - 4) return undefined;
  let header: { key: FeatureKey; count: number; dim: number; times: number[]; video: VideoSummary; present?: number[] };
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8')) as typeof header;
  } catch {
    return undefined;
  }
  const dataBytes = header.count * header.dim * 4;
  if (8 + hlen + dataBytes + 4 !== buf.length) return undefined;
  if (expected && (header.key.contentHash !== expected.contentHash || header.key.backboneVersion !== expected.backboneVersion || (header.key.stream ?? 'rgb') !== (expected.stream ?? 'rgb'))) return undefined;
  if (header.present !== undefined && header.present.length !== header.count) return undefined;
  const data = new Float32Array(header.count * header.dim);
  Buffer.from(data.buffer).set(buf.subarray(8 + hlen, 8 + hlen + dataBytes));
  return { key: header.key, count: header.count, dim: header.dim, times: header.times, data, video: header.video, ...(header.present ? { present: Uint8Array.from(header.present) } : {}) };
}

const hashCache = new Map<string, { size: number; mtimeMs: number; hash: string }>();

/** sha256 of a file's bytes (streamed), cached per process by (path, size, mtime). */
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
  hashCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, hash: hex });
  return hex;
}

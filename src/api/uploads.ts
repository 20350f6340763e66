/**
 * Getting a clip onto the server's disk: a multipart upload or a URL download, streamed to a
 * temporary file with a size limit (413 past it) while its sha256 is computed, then renamed to a
 * content-addressed name under FRAMEWISE_DATA_DIR/uploads (the same bytes are stored once).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FramewiseError } from '../errors/index.js';

export interface StoredUpload {
  /** Content-addressed file: `<dataDir>/uploads/<sha256><ext>`. */
  path: string;
  contentHash: string;
  sizeBytes: number;
  /** True when these bytes were not stored before. */
  fresh: boolean;
}

const tooLarge = (limit: number): FramewiseError => new FramewiseError('FW_ERR_UPLOAD_TOO_LARGE', `the clip is larger than the limit of ${limit} bytes (FRAMEWISE_MAX_UPLOAD_BYTES)`, { details: { limit } });

/** A safe extension kept for people browsing the folder (ffprobe decides what the file is). */
function safeExt(name: string | undefined): string {
  const ext = extname(name ?? '').toLowerCase();
  return /^\.[a-z0-9]{1,8}$/.test(ext) ? ext : '.bin';
}

/** Stream to `<uploadsDir>/<sha256><ext>`, failing with FW_ERR_UPLOAD_TOO_LARGE past `limit` bytes. */
export async function storeStream(source: NodeJS.ReadableStream, uploadsDir: string, limit: number, nameHint?: string): Promise<StoredUpload> {
  await mkdir(uploadsDir, { recursive: true });
  const tmp = join(uploadsDir, `.upload-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      size += chunk.length;
      if (size > limit) {
        cb(tooLarge(limit));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(tmp));
    // @fastify/multipart stops at its own limit and marks the stream truncated instead of failing
    if ((source as { truncated?: boolean }).truncated) throw tooLarge(limit);
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof FramewiseError) throw err;
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(limit);
    throw err;
  }
  const contentHash = hash.digest('hex');
  const path = join(uploadsDir, `${contentHash}${safeExt(nameHint)}`);
  const existed = await stat(path).then(
    () => true,
    () => false,
  );
  if (existed) await rm(tmp, { force: true });
  else await rename(tmp, path);
  return { path, contentHash, sizeBytes: size, fresh: !existed };
}

/** Download an http(s) URL into the uploads folder (size-limited like an upload). */
export async function downloadUrl(url: string, uploadsDir: string, limit: number, timeoutMs = 120_000): Promise<StoredUpload> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FramewiseError('FW_ERR_REQUEST_INVALID', `not a URL: ${url}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new FramewiseError('FW_ERR_URL_FORBIDDEN', `only http(s) URLs are accepted, not ${parsed.protocol}`);
  let res: Response;
  try {
    res = await fetch(parsed, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  } catch (err) {
    throw new FramewiseError('FW_ERR_URL_FETCH_FAILED', `cannot download ${url}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new FramewiseError('FW_ERR_URL_FETCH_FAILED', `cannot download ${url}: HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await res.body.cancel().catch(() => undefined);
    throw tooLarge(limit);
  }
  return storeStream(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), uploadsDir, limit, parsed.pathname);
}

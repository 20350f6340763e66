/**
 * Getting a clip onto the server's disk: a multipart upload or a URL download, streamed to a
 * temporary file with a size limit (413 past it) while its sha256 is computed, then renamed to
 * `<sha256>-<request id><ext>` under FRAMEWISE_DATA_DIR/uploads. Each upload is its own file: it
 * belongs to the one job made with it (retention deletes it after that job ends: see
 * jobs/queue/retention.ts), and a request that made no job removes it at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FramewiseError, toStorageError } from '../errors/index.js';
import { guardedRequest, redactUrl, UnreachableError, type NetworkPolicy } from '../net/net-guard.js';

export interface StoredUpload {
  /** `<dataDir>/uploads/<sha256>-<request id><ext>`. */
  path: string;
  contentHash: string;
  sizeBytes: number;
  /** True when the file was stored by this request (always, since uploads are stored per request). */
  fresh: boolean;
}

const tooLarge = (limit: number): FramewiseError => new FramewiseError('FW_ERR_UPLOAD_TOO_LARGE', `the clip is larger than the limit of ${limit} bytes (FRAMEWISE_MAX_UPLOAD_BYTES)`, { details: { limit } });

/**
 * Make a folder (and its parents). A folder made alone first: on a read-only file system Node's
 * recursive mkdir can report ENOENT rather than EROFS, which would hide the storage error.
 */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true });
  }
}

/** An error of the file system (write stream, mkdir, rename): errno-style, with a syscall. */
const isFsError = (err: unknown): boolean => typeof (err as NodeJS.ErrnoException | undefined)?.syscall === 'string';

/** A safe extension kept for people browsing the folder (ffprobe decides what the file is). */
function safeExt(name: string | undefined): string {
  const ext = extname(name ?? '').toLowerCase();
  return /^\.[a-z0-9]{1,8}$/.test(ext) ? ext : '.bin';
}

/**
 * Stream to `<uploadsDir>/<sha256>-<request id><ext>`, failing with FW_ERR_UPLOAD_TOO_LARGE past `limit` bytes.
 * With `holds`, the file's count there is raised before it is stored (the caller lowers it when
 * done with the file), so that a concurrent request never removes a file another one uses.
 */
export async function storeStream(source: NodeJS.ReadableStream, uploadsDir: string, limit: number, nameHint?: string, holds?: Map<string, number>): Promise<StoredUpload> {
  await ensureDir(uploadsDir).catch((err: unknown) => {
    throw toStorageError(err, 'the upload');
  });
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
    if (isFsError(err)) throw toStorageError(err, 'the upload');
    throw err;
  }
  const contentHash = hash.digest('hex');
  const path = join(uploadsDir, `${contentHash}-${randomBytes(4).toString('hex')}${safeExt(nameHint)}`);
  holds?.set(path, (holds.get(path) ?? 0) + 1);
  const existed = await stat(path).then(
    () => true,
    () => false,
  );
  if (existed) await rm(tmp, { force: true });
  else
    await rename(tmp, path).catch(async (err: unknown) => {
      holds?.set(path, (holds.get(path) ?? 1) - 1);
      await rm(tmp, { force: true });
      throw toStorageError(err, 'the upload');
    });
  return { path, contentHash, sizeBytes: size, fresh: !existed };
}

/**
 * Download an http(s) URL into the uploads folder (size-limited like an upload). Internal
 * addresses are refused after DNS resolution, on every redirect hop (see net-guard.ts); a
 * refused address, a refused connection and a timeout give the same FW_ERR_URL_FETCH_FAILED.
 */
export async function downloadUrl(url: string, uploadsDir: string, limit: number, policy: NetworkPolicy, opts: { timeoutMs?: number; holds?: Map<string, number> } = {}): Promise<StoredUpload> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'not a URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new FramewiseError('FW_ERR_URL_FORBIDDEN', `only http(s) URLs are accepted, not ${parsed.protocol}`);
  if (parsed.username !== '' || parsed.password !== '') throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'URLs with credentials (user:password@) are not accepted');
  const shown = redactUrl(url);
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 120_000);
  let res: Awaited<ReturnType<typeof guardedRequest>>;
  try {
    res = await guardedRequest(parsed, { method: 'GET', signal }, policy);
  } catch (err) {
    if (!(err instanceof UnreachableError)) throw err;
    throw new FramewiseError('FW_ERR_URL_FETCH_FAILED', `cannot download ${shown}: no answer in time, connection refused, or an address FRAMEWISE_NETWORK_ALLOW does not allow`, { cause: err });
  }
  if (res.status < 200 || res.status > 299) {
    res.body.destroy();
    throw new FramewiseError('FW_ERR_URL_FETCH_FAILED', `cannot download ${shown}: HTTP ${res.status}`);
  }
  const declared = Number(res.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    res.body.destroy();
    throw tooLarge(limit);
  }
  try {
    return await storeStream(res.body, uploadsDir, limit, parsed.pathname, opts.holds);
  } catch (err) {
    if (err instanceof FramewiseError) throw err;
    throw new FramewiseError('FW_ERR_URL_FETCH_FAILED', `cannot download ${shown}: the transfer did not complete`, { cause: err });
  }
}

/**
 * The web page (static files in `web/`, plain JS, no framework, nothing from a CDN: it works
 * offline) as a fastify plugin, registered by the API server:
 *
 *   GET /                    web/index.html
 *   GET /web/<file>          web/app.js, web/style.css (only the files of the page; no listing)
 *   GET /v1/web/config       what the page may offer here: server paths, URL input, API key needed
 *   GET /v1/jobs/:id/video   the job's video (an upload or a server path), with HTTP Range
 *                            support so the browser can seek; registered only when the API does
 *                            not already have the route
 *
 * The page talks to the API only through its public routes (POST /v1/clips, GET /v1/jobs/:id,
 * its SSE events, batches, models), so it shows exactly what a client of the API would get.
 */
import { constants } from 'node:fs';
import { open, readFile, readlink, realpath, type FileHandle } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Job } from 'bullmq';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { PROJECT_ROOT, type Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import { isClipId, stageJobIds } from '../jobs/queue/idempotency.js';
import { readResult } from '../jobs/queue/results-store.js';
import { QueueName } from '../jobs/queue/names.js';
import type { ClipRef } from '../jobs/queue/payloads.js';
import { withQueue, type QueueRuntime } from '../jobs/queue/runtime.js';
import { createPathGuard, isWithin } from './path-guard.js';

export interface WebOptions {
  /** The queue runtime the API uses (to find a job's video). */
  runtime: QueueRuntime;
  config: Config;
  /** Folder of the page's files. @defaultValue `<project>/web` */
  root?: string;
  /**
   * Whether POST /v1/clips accepts `windows` (W,S or `auto`: label window by window, as
   * `label --windows`); the page then offers it. @defaultValue false
   */
  windows?: boolean;
}

/** The page's files and their types: nothing else under `root` is served. */
export const WEB_FILES: Readonly<Record<string, string>> = Object.freeze({
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
});

const VIDEO_TYPES: Readonly<Record<string, string>> = {
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.mov': 'video/quicktime',
  '.webm': 'video/webm',
  '.mkv': 'video/x-matroska',
  '.ogv': 'video/ogg',
  '.avi': 'video/x-msvideo',
};

/** Parse one `bytes=a-b` range against a size; undefined when absent, 'invalid' when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'invalid' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    // suffix: the last N bytes
    const n = Number(m[2]);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'invalid';
  return { start, end };
}

/**
 * Open a job's file for serving, only if it is still what may be served: its real path within the
 * allowed folders now (`guard`: FRAMEWISE_PATH_ROOTS and the uploads folder), opened without
 * following a symlink in its last component (O_NOFOLLOW), and the opened file's own path checked
 * again (a folder swapped for a symlink between the check and the open is caught too).
 */
async function openServable(path: string, guard: (p: string) => Promise<string>, allowed: () => Promise<readonly string[]>): Promise<FileHandle> {
  const real = await guard(path);
  let handle: FileHandle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'the video of this job is outside the allowed roots (FRAMEWISE_PATH_ROOTS)');
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', 'the video of this job is no longer on the server', { cause: err });
  }
  try {
    const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => real);
    const roots = await allowed();
    if (!roots.some((r) => isWithin(opened, r))) throw new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'the video of this job is outside the allowed roots (FRAMEWISE_PATH_ROOTS)');
    if (!(await handle.stat()).isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', 'the video of this job is not a regular file');
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Send an opened file, honouring one HTTP Range (206), for `<video>` seeking; the handle is closed after. */
async function sendFile(reply: FastifyReply, handle: FileHandle, type: string, rangeHeader: string | undefined): Promise<FastifyReply> {
  let size: number;
  try {
    size = (await handle.stat()).size;
  } catch (err) {
    await handle.close();
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', 'the video of this job is no longer on the server', { cause: err });
  }
  void reply.header('accept-ranges', 'bytes').header('content-type', type).header('cache-control', 'private, max-age=3600');
  const range = parseRange(rangeHeader, size);
  if (range === 'invalid') {
    await handle.close();
    return reply.status(416).header('content-range', `bytes */${size}`).send();
  }
  if (range === undefined) return reply.header('content-length', size).send(handle.createReadStream({ autoClose: true }));
  return reply
    .status(206)
    .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    .header('content-length', range.end - range.start + 1)
    .send(handle.createReadStream({ start: range.start, end: range.end, autoClose: true }));
}

/** The file a clip job reads (its ClipRef), from whichever of its stage jobs still exists. */
async function clipPath(rt: QueueRuntime, jobId: string): Promise<string> {
  if (!isClipId(jobId)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no job ${jobId} (job ids look like clip-<32 hex digits>)`);
  const ids = stageJobIds(jobId);
  const clip = await withQueue(async () => {
    for (const [queue, id] of [
      [QueueName.Classify, ids.classify],
      [QueueName.Embed, ids.embed],
      [QueueName.Decode, ids.decode],
    ] as const) {
      const job = await Job.fromId(rt.queues[queue], id);
      const ref = (job?.data as { clip?: ClipRef } | undefined)?.clip;
      if (ref) return ref;
    }
    return undefined;
  });
  if (clip) return clip.path;
  // its jobs have left Redis (retention): the file it read, as its stored result records it
  const stored = await readResult(rt.db, jobId);
  if (!stored?.realPath) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no job ${jobId}`);
  return stored.realPath;
}

export const webPlugin: FastifyPluginAsync<WebOptions> = async (app, opts) => {
  const root = opts.root ?? join(PROJECT_ROOT, 'web');
  // the page is three small files, read on each request (so an edited page shows on reload)
  const file = (name: string): Promise<Buffer> => readFile(join(root, name));
  const page = async (name: string, reply: FastifyReply): Promise<FastifyReply> =>
    reply
      .type(WEB_FILES[name] as string)
      .header('cache-control', 'no-cache')
      // the page loads nothing from elsewhere; blob: for videos fetched with an API key
      .header('content-security-policy', "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'")
      .header('x-content-type-options', 'nosniff')
      .send(await file(name));

  app.get('/', { schema: { hide: true } }, async (_req, reply) => page('index.html', reply));
  app.get<{ Params: { file: string } }>('/web/:file', { schema: { hide: true } }, async (req, reply) => {
    const name = req.params.file;
    if (!Object.hasOwn(WEB_FILES, name)) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such page file: ${name}`);
    return page(name, reply);
  });

  app.get('/v1/web/config', { schema: { summary: 'What the web page may offer on this server', tags: ['web'] } }, async () => ({
    pathInput: opts.config.queue.pathRoots.length > 0,
    urlInput: opts.config.queue.allowUrlInput,
    apiKeyRequired: opts.config.queue.apiKeys.length > 0,
    maxUploadBytes: opts.config.queue.maxUploadBytes,
    windows: opts.windows ?? false,
  }));

  // a job's video is served only from where it may be read now: the roots, or the uploads folder
  const servable = [...opts.config.queue.pathRoots, join(opts.config.queue.dataDir, 'uploads')];
  const guard = createPathGuard(servable);
  let realServable: Promise<string[]> | undefined;
  const allowed = (): Promise<string[]> => (realServable ??= Promise.all(servable.map((r) => realpath(r).catch(() => r))));

  // the API may serve videos itself one day: then its route wins (register this plugin after the API's routes)
  if (!app.hasRoute({ method: 'GET', url: '/v1/jobs/:id/video' })) {
    app.get<{ Params: { id: string } }>(
      '/v1/jobs/:id/video',
      { schema: { summary: "The job's video (the uploaded file or the server path it read), with HTTP Range support", tags: ['jobs'] } },
      async (req, reply) => {
        const path = await clipPath(opts.runtime, req.params.id);
        const handle = await openServable(path, guard, allowed);
        return sendFile(reply, handle, VIDEO_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream', req.headers.range);
      },
    );
  }
};

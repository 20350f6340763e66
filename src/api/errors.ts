/**
 * The API's one error handler: every error becomes `{error: {code, message}}` with the HTTP
 * status of its code (`ERROR_CODES[code].http`): route errors, fastify's own (body parsing,
 * validation, unknown routes) and the HTTP parser's (a malformed request or Content-Length).
 * Messages are made safe for callers here: absolute server paths become their base names (unless
 * the caller gave that path) and ffmpeg/ffprobe output is dropped; the CLI keeps the details.
 */
import type { Socket } from 'node:net';
import { basename } from 'node:path';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, FramewiseError, toFramewiseError, type ErrorCode } from '../errors/index.js';
import { toQueueError } from '../jobs/queue/runtime.js';

/** What busboy (through @fastify/multipart) throws for a body that is not valid multipart. */
const MALFORMED_MULTIPART = /^(Multipart: |Unexpected end of (multipart data|form)|Malformed (part header|content type|urlencoded form)|Part terminated early|Missing Content-Type)/;

/** Any error met while serving a request, as a FramewiseError. */
export function toApiError(err: unknown): FramewiseError {
  const queued = toQueueError(err);
  if (queued instanceof FramewiseError) return queued;
  const e = err as Partial<FastifyError> & { validation?: unknown };
  if (e.validation) return new FramewiseError('FW_ERR_REQUEST_INVALID', e.message ?? 'invalid request');
  // too many parts, files or fields in a multipart body: a malformed request, not a large one
  if (e.code === 'FST_PARTS_LIMIT' || e.code === 'FST_FILES_LIMIT' || e.code === 'FST_FIELDS_LIMIT') return new FramewiseError('FW_ERR_REQUEST_INVALID', e.message ?? 'too many parts in the multipart body');
  if (e.code === 'FST_REQ_FILE_TOO_LARGE' || e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e.statusCode === 413) {
    return new FramewiseError('FW_ERR_UPLOAD_TOO_LARGE', e.message ?? 'request body too large');
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new FramewiseError('FW_ERR_REQUEST_INVALID', e.message ?? 'invalid request');
  if (err instanceof Error && !(err instanceof FramewiseError) && MALFORMED_MULTIPART.test(err.message)) return new FramewiseError('FW_ERR_REQUEST_INVALID', `the multipart body is malformed: ${err.message}`, { cause: err });
  return toFramewiseError(err);
}

/** An absolute POSIX path in a message (not the path part of a URL: no `:` or `/` just before it). */
const ABSOLUTE_PATH = /(?<![\w.:/~-])\/(?:[^\s/'"`()<>|,;:]+\/)*[^\s/'"`()<>|,;:]+\/?/g;

/** Strings the caller sent (body fields, query), which may be named back to it as they are. */
function callerStrings(req: FastifyRequest | undefined): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown, depth: number): void => {
    if (typeof v === 'string') out.add(v);
    else if (v && typeof v === 'object' && depth < 3) for (const x of Object.values(v)) walk(x, depth + 1);
  };
  walk(req?.body, 0);
  walk(req?.query, 0);
  return out;
}

/**
 * A message safe to show an API caller: ffmpeg/ffprobe output dropped (media errors keep their
 * first sentence and the file's name), absolute server paths shortened to their base name unless
 * the caller gave that very path.
 */
export function sanitizeMessage(message: string, code: ErrorCode | string, given: ReadonlySet<string> = new Set()): string {
  let m = message;
  if (code.startsWith('FW_ERR_MEDIA_')) {
    m = m.replace(/\s*\((ffprobe|ffmpeg): [\s\S]*?\)(?=: \/|$)/, '');
    // "<what happened>: <path>: <stderr tail>" → "<what happened>: <path>"
    const first = ABSOLUTE_PATH.exec(m);
    ABSOLUTE_PATH.lastIndex = 0;
    if (first) m = m.slice(0, first.index + first[0].length);
  }
  const keep = [...given].filter((g) => g.startsWith('/') && g.length > 1);
  const callerGave = (p: string): boolean => !p.includes('/..') && keep.some((g) => g === p || p.startsWith(g.endsWith('/') ? g : `${g}/`));
  return m.replace(ABSOLUTE_PATH, (p) => (callerGave(p) ? p : basename(p) || p));
}

/** A job's or result's `{code, message}` with a safe message (worker messages name server paths and may quote ffmpeg). */
export function safeError<T extends { code: string; message: string } | null | undefined>(error: T): T {
  if (!error) return error;
  return { ...error, message: sanitizeMessage(error.message, error.code) };
}

type CodedError = { code: string; message: string } | null | undefined;

/** A clip status or result line with its errors made safe (`error`, and each stage's in `stages`). */
export function safeStatus<T extends object | undefined>(s: T): T {
  if (!s) return s;
  const o = s as { error?: CodedError; stages?: Record<string, { error?: CodedError }> };
  const out: typeof o = { ...o };
  if (o.error) out.error = safeError(o.error);
  if (o.stages) out.stages = Object.fromEntries(Object.entries(o.stages).map(([k, v]) => [k, { ...v, error: safeError(v.error) }]));
  return out as T;
}

/** `{error: {code, message}}` with a safe message, as the API answers it. */
export function toApiErrorBody(err: unknown, req?: FastifyRequest): { status: number; body: { error: { code: ErrorCode; message: string } } } {
  const e = toApiError(err);
  return { status: ERROR_CODES[e.code].http, body: { error: { code: e.code, message: sanitizeMessage(e.message, e.code, callerStrings(req)) } } };
}

export function apiErrorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toApiErrorBody(err, req);
  if (status >= 500) req.log.error({ err, code: body.error.code }, 'request failed');
  if (body.error.code === 'FW_ERR_AUTH_REQUIRED') void reply.header('www-authenticate', 'Bearer realm="framewise"');
  void reply.status(status).send(body);
}

/** Unknown routes and methods: FW_ERR_ROUTE_NOT_FOUND (404) in the API's shape. */
export function apiNotFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  void reply.status(ERROR_CODES.FW_ERR_ROUTE_NOT_FOUND.http).send({ error: { code: 'FW_ERR_ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0] ?? ''}` } });
}

/**
 * Errors of the HTTP parser (a Content-Length that does not match the body, a malformed request
 * line or header): 400 FW_ERR_REQUEST_INVALID in the API's shape, then the connection closes.
 */
export function apiClientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy(err);
    return;
  }
  const body = JSON.stringify({ error: { code: 'FW_ERR_REQUEST_INVALID', message: `the HTTP request is malformed${err.code ? ` (${err.code})` : ''}: check its Content-Length, request line and headers` } });
  socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The API's one error handler: every error becomes `{error: {code, message}}` with the HTTP
 * status of its code (`ERROR_CODES[code].http`).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, FramewiseError, toFramewiseError } from '../errors/index.js';
import { toQueueError } from '../jobs/queue/runtime.js';

/** Any error met while serving a request, as a FramewiseError. */
export function toApiError(err: unknown): FramewiseError {
  const queued = toQueueError(err);
  if (queued instanceof FramewiseError) return queued;
  const e = err as Partial<FastifyError> & { validation?: unknown };
  if (e.validation) return new FramewiseError('FW_ERR_REQUEST_INVALID', e.message ?? 'invalid request');
  if (e.code === 'FST_REQ_FILE_TOO_LARGE' || e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e.statusCode === 413) {
    return new FramewiseError('FW_ERR_UPLOAD_TOO_LARGE', e.message ?? 'request body too large');
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new FramewiseError('FW_ERR_REQUEST_INVALID', e.message ?? 'invalid request');
  return toFramewiseError(err);
}

export function apiErrorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const e = toApiError(err);
  const status = ERROR_CODES[e.code].http;
  if (status >= 500) req.log.error({ err, code: e.code }, 'request failed');
  if (e.code === 'FW_ERR_AUTH_REQUIRED') void reply.header('www-authenticate', 'Bearer realm="framewise"');
  void reply.status(status).send({ error: { code: e.code, message: e.message } });
}

/**
 * Bearer API keys: when FRAMEWISE_API_KEYS is set, every route except the health probes needs
 * `Authorization: Bearer <key>` (compared in constant time).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES } from '../errors/index.js';

/** Routes open without a key (health probes for orchestrators). */
/** Routes open without a key: health checks and the page's static files (the page holds no data; it sends the key on its API calls). */
export const OPEN_ROUTES: readonly string[] = ['/healthz', '/readyz', '/', '/web/index.html', '/web/app.js', '/web/style.css'];

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Whether a request carries one of the keys (always true when no keys are configured). */
export function createKeyCheck(keys: readonly string[]): (req: FastifyRequest) => boolean {
  const digests = keys.map(digest);
  return (req) => {
    if (digests.length === 0) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const given = m ? digest(m[1] as string) : undefined;
    // compare with every key (no early exit), in constant time per key
    let ok = false;
    for (const d of digests) if (given && timingSafeEqual(given, d)) ok = true;
    return ok;
  };
}

/**
 * An `onRequest` hook. It answers 401 itself (rather than throwing) so that plugins with their
 * own error handlers (Bull Board) give the same answer as the API's routes.
 */
export function createAuthHook(keys: readonly string[]): (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  const valid = createKeyCheck(keys);
  return async (req, reply) => {
    if (keys.length === 0) return undefined;
    const path = req.url.split('?')[0] ?? '';
    if (OPEN_ROUTES.includes(path)) return undefined;
    if (valid(req)) return undefined;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const message = m ? 'invalid API key' : 'this API needs a key: send `Authorization: Bearer <key>`';
    return reply
      .status(ERROR_CODES.FW_ERR_AUTH_REQUIRED.http)
      .header('www-authenticate', 'Bearer realm="framewise"')
      .send({ error: { code: 'FW_ERR_AUTH_REQUIRED', message } });
  };
}

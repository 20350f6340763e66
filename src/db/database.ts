/**
 * PostgreSQL, the durable home of results and batch entries in queue mode (the inline CLI never
 * opens it). One pool per process (`pg`), every connection on FRAMEWISE_DB_SCHEMA (its own
 * `search_path`), the schema made and migrated at start-up (`ready()`: see migrate.ts), large reads
 * through server-side cursors (`stream`: flat memory at any size).
 *
 * Errors name DATABASE_URL (never its password): unset → FW_ERR_CONFIG_INVALID; unreachable,
 * refused, unknown database or bad credentials → FW_ERR_DATABASE_UNAVAILABLE.
 */
import pg from 'pg';
import Cursor from 'pg-cursor';
import type { QueueConfig } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import { migrate } from './migrate.js';

export type Row = Record<string, unknown>;

export interface Database {
  /** The schema framewise's tables live in (FRAMEWISE_DB_SCHEMA). */
  readonly schema: string;
  /** Connect and apply the migrations, once per process (later calls share the first). */
  ready(): Promise<void>;
  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<pg.QueryResult<R>>;
  /** The rows of a query through a server-side cursor, `batchRows` at a time; stop early by leaving the loop. */
  stream<R extends Row = Row>(text: string, params?: readonly unknown[], batchRows?: number): AsyncGenerator<R>;
  /** Run `fn` in one transaction on one connection (rolled back if it throws). */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** `postgres://user@host:port/db`: the URL without its password, for messages. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString().replace(/\?.*$/, '');
  } catch {
    return 'an unparsable URL';
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);
/** SQLSTATE classes of connection problems: 08 connection exception, 28 authorization, 3D unknown database, 57P admin shutdown/cannot connect now. */
const CONNECTION_STATES = /^(08|28|3D|57P)/;

/** Whether an error from `pg` means the database is not there (as opposed to a bad query). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (CONNECTION_CODES.has(code) || CONNECTION_STATES.test(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end|timeout exceeded when trying to connect/i.test(message);
}

/** A `pg` error as FW_ERR_DATABASE_UNAVAILABLE (connection problems) or unchanged. */
export function toDatabaseError(err: unknown, url: string): unknown {
  if (err instanceof FramewiseError || !isConnectionError(err)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new FramewiseError('FW_ERR_DATABASE_UNAVAILABLE', `cannot use PostgreSQL at DATABASE_URL ${redactDatabaseUrl(url)}: ${reason}`, { cause: err });
}

const notConfigured = (): FramewiseError =>
  new FramewiseError('FW_ERR_CONFIG_INVALID', 'DATABASE_URL is not set: queue mode keeps results and batch entries in PostgreSQL (the API, the classify and ingest workers and `framewise results` need it), e.g. DATABASE_URL=postgres://framewise@127.0.0.1:5432/framewise');

/** A database whose every use fails with the configuration error (DATABASE_URL unset). */
function missingDatabase(schema: string): Database {
  const fail = (): Promise<never> => Promise.reject(notConfigured());
  return {
    schema,
    ready: fail,
    query: fail,
    stream: async function* () {
      throw notConfigured();
    },
    transaction: fail,
    close: async () => undefined,
  };
}

/** The pool for this configuration (nothing connects before the first query or `ready()`). */
export function openDatabase(q: Pick<QueueConfig, 'databaseUrl' | 'dbSchema' | 'dbPoolSize'>): Database {
  const url = q.databaseUrl;
  const schema = q.dbSchema;
  if (url === undefined) return missingDatabase(schema);
  const pool = new pg.Pool({
    connectionString: url,
    max: q.dbPoolSize,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    // every connection works in the deployment's schema
    options: `-c search_path=${pg.escapeIdentifier(schema)}`,
    application_name: 'framewise',
  });
  pool.on('error', () => undefined); // an idle connection lost: the next query reconnects or fails
  const wrap = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toDatabaseError(err, url);
    }
  };
  let readying: Promise<void> | undefined;
  let closed = false;
  return {
    schema,
    ready() {
      readying ??= wrap(() => migrate(pool, schema)).then(
        () => undefined,
        (err: unknown) => {
          readying = undefined; // a later call tries again
          throw err;
        },
      );
      return readying;
    },
    query<R extends Row>(text: string, params: readonly unknown[] = []) {
      return wrap(() => pool.query<R>(text, params as unknown[]));
    },
    async *stream<R extends Row>(text: string, params: readonly unknown[] = [], batchRows = 500) {
      const client = await wrap(() => pool.connect());
      const cursor = client.query(new Cursor<R>(text, params as unknown[]));
      let failed: unknown;
      try {
        for (;;) {
          const rows = await wrap(() => cursor.read(batchRows));
          if (rows.length === 0) break;
          for (const r of rows) yield r;
        }
      } catch (err) {
        failed = err;
        throw err;
      } finally {
        await cursor.close().catch(() => undefined);
        client.release(failed instanceof Error && isConnectionError(failed) ? failed : undefined);
      }
    },
    async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
      const client = await wrap(() => pool.connect());
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw toDatabaseError(err, url);
      } finally {
        client.release();
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => undefined);
    },
  };
}

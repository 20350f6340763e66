/**
 * PostgreSQL for tests. The suite starts one private cluster (`initdb` + `pg_ctl` on a free port,
 * in a temporary folder: `postgres-global.ts`, vitest's globalSetup) and hands its URL to every
 * test file as DATABASE_URL; with DATABASE_URL already set, that server is used instead. Test
 * files keep apart by schema (FRAMEWISE_DB_SCHEMA, one per `testEnv`), as they do by queue prefix
 * in Redis. `startPostgres()` starts a cluster of a test's own (one it may stop).
 */
import { startPostgresServer, type PostgresServer } from '../../src/db/postgres-server.js';

export type { PostgresServer };

export const startPostgres = (): Promise<PostgresServer> => startPostgresServer();

/** The suite's database URL (set by the global setup, or given by the environment). */
export function testDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: the test suite starts PostgreSQL in its globalSetup (test/helpers/postgres-global.ts); run the tests with vitest');
  return url;
}

/** A PostgreSQL schema name for a queue prefix (lower-case letters, digits and _, at most 63). */
export function schemaFor(prefix: string): string {
  const s = `t_${prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  return s.length <= 63 ? s : `${s.slice(0, 50)}_${s.length.toString(36)}${s.slice(-8)}`;
}

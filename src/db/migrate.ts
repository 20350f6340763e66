/**
 * Schema migrations: a small versioned folder of SQL files (`db/migrations/NNNN_name.sql`, applied
 * in version order, each once), run at start-up by every process that uses the database. All
 * pending files are applied in one transaction under an advisory lock, so that processes
 * starting together (the API and its workers) apply them exactly once; a failing file leaves the
 * schema as it was. Applied versions are recorded in `<schema>.schema_migrations`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT } from '../config/index.js';

/** Where the SQL files are (shipped beside `dist/`, like `pretrained/`). */
export const MIGRATIONS_DIR = join(PROJECT_ROOT, 'db', 'migrations');

export interface Migration {
  version: number;
  name: string;
  file: string;
}

const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/**
 * The migrations a folder lists, in version order; other files are ignored. Two files with one
 * version, or a gap in the versions, are refused (a file was lost or misnamed).
 */
export function planMigrations(files: readonly string[]): Migration[] {
  const out: Migration[] = [];
  for (const file of files) {
    const m = FILE.exec(file);
    if (m) out.push({ version: Number(m[1]), name: m[2] as string, file });
  }
  out.sort((a, b) => a.version - b.version);
  out.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migrations: expected version ${i + 1}, found ${m.file} (versions start at 0001 and have no gaps or duplicates)`);
  });
  return out;
}

/** Apply the pending migrations of `dir` to `schema` (made if missing). Returns the versions applied now. */
export async function migrate(pool: pg.Pool, schema: string, dir: string = MIGRATIONS_DIR): Promise<number[]> {
  const plan = planMigrations(await readdir(dir));
  const s = pg.escapeIdentifier(schema);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // one migrating process per schema at a time; the others wait, then find nothing to do
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`framewise-migrations:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`SET LOCAL search_path TO ${s}`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of plan) {
      if (done.has(m.version)) continue;
      await client.query(await readFile(join(dir, m.file), 'utf8'));
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

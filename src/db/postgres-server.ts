/**
 * A private PostgreSQL cluster (the real server) on a free port, in its own temporary folder: for
 * the benchmark and the tests, never for production (there, DATABASE_URL points at a managed
 * database). `initdb` + `pg_ctl` from the Debian layout (`/usr/lib/postgresql/<version>/bin`, the
 * newest) or PATH. Both refuse to run as root: as root they run as the `postgres` user, which owns
 * the folder. Durability is traded for speed (fsync off): a test cluster, not a store.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../jobs/queue/redis-server.js';

const run = promisify(execFile);

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Stop the server (fast shutdown) and remove its folder. */
  stop(): Promise<void>;
}

export interface PostgresServerOptions {
  /** Folder with `initdb`, `pg_ctl` and `postgres`. @defaultValue the newest /usr/lib/postgresql/<v>/bin, else PATH */
  binDir?: string;
}

const canRun = (p: string): Promise<boolean> =>
  access(p, constants.X_OK).then(
    () => true,
    () => false,
  );

/** The folder of PostgreSQL's server programs, or undefined when none is installed. */
export async function findPostgresBin(): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root).catch(() => [] as string[])).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (await canRun(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  for (const d of (process.env.PATH ?? '').split(':')) if (d && (await canRun(join(d, 'initdb'))) && (await canRun(join(d, 'pg_ctl')))) return d;
  return undefined;
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

export async function startPostgresServer(opts: PostgresServerOptions = {}): Promise<PostgresServer> {
  const bin = opts.binDir ?? (await findPostgresBin());
  if (!bin) throw new Error('PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH): run scripts/setup.sh, or set DATABASE_URL');
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(join(tmpdir(), 'fw-pg-'));
  const as = async (cmd: string, args: string[]): Promise<void> => {
    const file = join(bin, cmd);
    try {
      if (asRoot) await run('runuser', ['-u', 'postgres', '--', file, ...args], { cwd: dir });
      else await run(file, args, { cwd: dir });
    } catch (err) {
      const e = err as { stderr?: string; message?: string };
      throw new Error(`${cmd} failed: ${(e.stderr ?? e.message ?? String(err)).trim().slice(-2000)}`);
    }
  };
  try {
    if (asRoot) {
      const { uid, gid } = await postgresUser().catch(() => {
        throw new Error('running as root, PostgreSQL needs the `postgres` user (the Debian postgresql package makes it)');
      });
      await chown(dir, uid, gid);
    }
    const data = join(dir, 'data');
    await as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
    const port = await freePort();
    const options = ['-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'].join(' ');
    await as('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
    let stopped = false;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dir,
      async stop() {
        if (stopped) return;
        stopped = true;
        await as('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

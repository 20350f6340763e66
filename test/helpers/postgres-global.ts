/**
 * vitest globalSetup: one private PostgreSQL cluster for the whole run (about a second to start),
 * its URL handed to every test file as DATABASE_URL; stopped and removed at the end. With
 * DATABASE_URL set, that server is used and nothing is started.
 */
import { startPostgresServer } from '../../src/db/postgres-server.js';

export default async function setup(): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) return async () => undefined;
  const server = await startPostgresServer();
  process.env.DATABASE_URL = server.url;
  return async () => {
    delete process.env.DATABASE_URL;
    await server.stop();
  };
}

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // one private PostgreSQL cluster for the run (queue mode keeps results there), unless DATABASE_URL is set
    globalSetup: ['test/helpers/postgres-global.ts'],
    // real ffmpeg, real models and real redis-server: generous timeouts, files in parallel on 2 cores
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});

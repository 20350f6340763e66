/**
 * Queue-mode commands, registered on the main program:
 *   framewise serve [--host --port]                 the HTTP API
 *   framewise worker <all|decode|embed|classify|webhook|train|ingest[,...]>
 *   framewise submit <files...> [--wait]            one job per file (prints job ids, or results)
 *   framewise batch <dir|glob|manifest> [--mode missing|all] [--windows W,S] [--wait]
 *   framewise status <job or batch id>
 * They need Redis (REDIS_URL) and PostgreSQL (DATABASE_URL: results, batch entries); `label` keeps
 * working inline without either. Files given to `submit`
 * and `batch` are read by the workers: they must see the same paths (one machine or a shared
 * file system). Output: JSON on stdout, the same result lines as `label`.
 */
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import type { Config } from '../config/index.js';
import { getLogger } from '../config/log.js';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { expandInputs } from '../features/inputs.js';
import { failure, type LabelResult } from '../jobs/label.js';
import { BATCH_MODES, batchStatus, createBatch, streamBatchResults, type BatchMode, type BatchSource, type BatchStatus } from '../jobs/queue/batches.js';
import { csvHeader, resultCsvRows } from '../jobs/result-csv.js';
import { stringify } from 'csv-stringify/sync';
import { clipStatus, submitClip, toClipWindows, toResult, waitForClip } from '../jobs/queue/clips.js';
import { currentModelInfo, type ModelInfo } from '../jobs/queue/model-info.js';
import type { ClipWindows } from '../jobs/queue/payloads.js';
import { isBatchId } from '../jobs/queue/idempotency.js';
import { openQueueRuntime, type QueueRuntime } from '../jobs/queue/runtime.js';
import { FORCED_EXIT_CODE, shutdownOnSignals, startHoldingSignals } from '../jobs/queue/shutdown.js';
import { ALL_WORKER_KINDS, closeOnSignals, startWorkers, WORKER_KINDS, type WorkerKind } from '../jobs/queue/workers.js';
import { probe } from '../media/ffmpeg.js';
import { runtimeFromConfig } from '../jobs/runtime.js';
import { EXIT } from './exit-codes.js';
import { nonNegativeNumber, positiveInt, unitInterval } from './arg-parsers.js';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

type Run = (fn: (config: Config) => Promise<number>) => Promise<void>;


const port = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('--port must be 0–65535');
  return n;
};

/** The queue and its database (results, batch entries: DATABASE_URL, checked first). */
async function withRuntime<T>(config: Config, fn: (rt: QueueRuntime) => Promise<T>): Promise<T> {
  const rt = openQueueRuntime(config, 'producer');
  try {
    await rt.db.ready();
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

const line = (io: CliIo, v: unknown): void => {
  io.stdout.write(`${JSON.stringify(v)}\n`);
};

async function cmdServe(o: { host?: string; port?: number }, config: Config, io: CliIo): Promise<number> {
  const { startServer } = await import('../api/server.js');
  const log = getLogger();
  // graceful: stop listening, let requests finish, close the queue connections; forced (deadline
  // or a second signal): cut the client connections (open event streams included); see shutdown.ts
  const outcome = await startHoldingSignals(
    () => startServer(config, o, { logLevel: log.level }),
    ({ app, url }) => {
      line(io, { listening: url });
      return shutdownOnSignals(
        'api',
        {
          graceful: () => app.close(),
          force: async () => {
            app.server.closeAllConnections();
          },
        },
        { timeoutMs: config.queue.shutdownTimeoutMs, log },
      );
    },
    { timeoutMs: config.queue.shutdownTimeoutMs, log },
  );
  return outcome === 'graceful' ? EXIT.OK : FORCED_EXIT_CODE;
}

/** `all`, one kind, or a comma-separated list (`embed,classify,webhook`). */
export function parseWorkerKinds(text: string): WorkerKind[] {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  const kinds = parts.flatMap((p) => (p === 'all' ? [...ALL_WORKER_KINDS] : [p]));
  const bad = kinds.filter((k) => !(WORKER_KINDS as readonly string[]).includes(k));
  if (kinds.length === 0 || bad.length > 0) throw new InvalidArgumentError(`unknown worker kind ${bad.join(', ') || "''"}: expected all or a comma-separated list of ${WORKER_KINDS.join(', ')}`);
  return [...new Set(kinds as WorkerKind[])];
}

async function cmdWorker(kinds: WorkerKind[], config: Config): Promise<number> {
  const log = getLogger(config.logLevel);
  const outcome = await startHoldingSignals(() => startWorkers(kinds, config, { log }), (group) => closeOnSignals(group, undefined, log), { timeoutMs: config.queue.shutdownTimeoutMs, log });
  return outcome === 'graceful' ? EXIT.OK : FORCED_EXIT_CODE;
}

interface WindowsFlags {
  windows?: string;
  threshold?: number;
  hysteresis?: number;
  minSegment?: number;
}

/** `--windows`/`--threshold` for the current model (as `label --windows` builds them), with that model. */
async function windowsFor(o: WindowsFlags, config: Config): Promise<{ model?: ModelInfo; windows?: ClipWindows }> {
  if (o.windows === undefined && o.threshold === undefined && o.hysteresis === undefined && o.minSegment === undefined) return {};
  const model = await currentModelInfo(config);
  const windows = toClipWindows(model, o.windows, o.threshold, { hysteresis: o.hysteresis, minSegmentSec: o.minSegment });
  return { model, ...(windows ? { windows } : {}) };
}

async function cmdSubmit(files: string[], o: WindowsFlags & { wait?: boolean; webhook?: string; topK?: number; timeout?: number }, config: Config, io: CliIo): Promise<number> {
  const windowed = await windowsFor(o, config);
  const expanded = await expandInputs(files);
  const tools = runtimeFromConfig(config).tools;
  let failed = 0;
  const write = (r: LabelResult): void => {
    if (!r.ok) failed++;
    line(io, r);
  };
  for (const e of expanded.errors) write(failure(e.source, e.error));
  await withRuntime(config, async (rt) => {
    const jobs: Array<{ source: string; jobId: string }> = [];
    for (const item of expanded.items) {
      try {
        await probe(item.path, tools); // refuse what is not a video before queueing, as the API does
        const out = await submitClip(rt, { path: resolve(item.path), source: item.source, priority: 'interactive', ...(o.webhook ? { webhook: o.webhook } : {}), ...(o.topK ? { topK: o.topK } : {}), ...windowed });
        if (o.wait) jobs.push({ source: item.source, jobId: out.jobId });
        else line(io, { path: item.source, jobId: out.jobId, created: out.created });
      } catch (err) {
        const e = toFramewiseError(err);
        if (e.code === 'FW_ERR_QUEUE_UNAVAILABLE') throw e;
        write(failure(item.source, e));
      }
    }
    for (const j of jobs) {
      const status = await waitForClip(rt, j.jobId, o.timeout ? { timeoutMs: o.timeout * 1000 } : {});
      write(toResult(status, j.source) as LabelResult);
    }
  });
  if (expanded.items.length + expanded.errors.length === 0) {
    io.stderr.write('framewise: no inputs\n');
    return EXIT.USAGE;
  }
  return failed > 0 ? EXIT.PARTIAL : EXIT.OK;
}

/** A glob, a manifest (.csv) or a folder/file. */
export function toBatchSource(arg: string): BatchSource {
  if (/[*?[\]{}]/.test(arg)) return { glob: resolve(arg) };
  if (arg.toLowerCase().endsWith('.csv')) return { manifest: resolve(arg) };
  return { path: resolve(arg) };
}

async function cmdBatch(source: string, o: WindowsFlags & { mode: BatchMode; wait?: boolean; webhook?: string; topK?: number; format: 'jsonl' | 'csv' }, config: Config, io: CliIo): Promise<number> {
  const windowed = await windowsFor(o, config);
  return withRuntime(config, async (rt) => {
    const out = await createBatch(rt, { source: toBatchSource(source), mode: o.mode, webhook: o.webhook, topK: o.topK, ...windowed });
    if (!o.wait) {
      line(io, out);
      return EXIT.OK;
    }
    io.stderr.write(`framewise: batch ${out.batchId}: an ingest worker lists, hashes and queues its files\n`);
    let s: BatchStatus | undefined;
    for (;;) {
      try {
        s = await batchStatus(rt, out.batchId);
      } catch (err) {
        if (!(err instanceof FramewiseError && err.code === 'FW_ERR_QUEUE_UNAVAILABLE')) throw err;
      }
      if (s && s.finishedAt !== null) break;
      await sleep(500);
    }
    if (!s) throw new FramewiseError('FW_ERR_INTERNAL', `batch ${out.batchId}: no status`);
    io.stderr.write(`framewise: batch ${out.batchId} ${s.state}: ${s.counts.total} files (${s.counts.completed} labelled, ${s.counts.failed} failed, ${s.counts.cancelled} cancelled, ${s.skipped} skipped)\n`);
    // streamed from PostgreSQL: any size in flat memory
    const segments = windowed.windows !== undefined;
    let failed = 0;
    if (o.format === 'csv') io.stdout.write(csvHeader(segments));
    for await (const { line: r } of streamBatchResults(rt, out.batchId)) {
      if (!r.ok) failed++;
      if (o.format === 'csv') io.stdout.write(stringify(resultCsvRows(r, segments)));
      else line(io, r);
    }
    return failed > 0 ? EXIT.PARTIAL : EXIT.OK;
  });
}

async function cmdStatus(id: string, config: Config, io: CliIo): Promise<number> {
  return withRuntime(config, async (rt) => {
    line(io, isBatchId(id) ? await batchStatus(rt, id) : await clipStatus(rt, id));
    return EXIT.OK;
  });
}

export function registerQueueCommands(program: Command, io: CliIo, run: Run): void {
  program
    .command('serve')
    .description('run the HTTP API (queue mode; needs Redis): uploads, jobs, batches, SSE, OpenAPI, Bull Board, metrics')
    .option('--host <host>', 'listen address (default: FRAMEWISE_API_HOST or 127.0.0.1)')
    .option('--port <port>', 'listen port (default: FRAMEWISE_API_PORT or 8080)', port)
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (o) => run((c) => cmdServe(o, c, io)));

  program
    .command('worker')
    .description('run queue workers until SIGTERM/SIGINT: decode (CPU), embed (GPU-bound), classify, webhook, train, ingest (batch listing); `all` = every kind')
    .addArgument(new Argument('<kinds>', `all, or one or more of ${WORKER_KINDS.join(', ')} (comma-separated)`).argParser(parseWorkerKinds))
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (kinds: WorkerKind[]) => run((c) => cmdWorker(kinds, c)));

  program
    .command('submit')
    .description('queue videos (files, folders, globs, manifests) as single clips; prints job ids, or with --wait the results (as `label` prints them)')
    .argument('<files...>', 'video files, folders, globs or manifest CSVs (paths the workers can read)')
    .option('--wait', 'wait for the results and print them')
    .option('--webhook <url>', 'http(s) URL called when each job finishes')
    .option('--top-k <k>', 'classes per result (default: FRAMEWISE_TOP_K or 3)', positiveInt('--top-k'))
    .option('--timeout <seconds>', 'with --wait: give up after this long per job', positiveInt('--timeout'))
    .option('--windows <W,S>', 'label window by window, as `label --windows` (W,S seconds, W, or auto)')
    .option('--threshold <p>', "with --windows: the segments' unknown threshold (default the model's)", unitInterval('--threshold'))
    .option('--hysteresis <h>', 'with --windows: a class holds down to threshold − h (default 0.1)', unitInterval('--hysteresis'))
    .option('--min-segment <sec>', 'with --windows: shorter segments are absorbed by a neighbour (default: the window length)', nonNegativeNumber('--min-segment'))
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (files: string[], o) => run((c) => cmdSubmit(files, o, c, io)));

  program
    .command('batch')
    .description('label a folder, glob or manifest as one batch (one job per file; an ingest worker lists it); prints the batch status at once, or with --wait the results')
    .argument('<source>', 'a folder, a glob (quoted) or a manifest .csv')
    .addOption(new Option('--mode <mode>', 'missing: skip files already labelled by the current model; all: every file').choices(BATCH_MODES).default('all'))
    .option('--wait', 'wait for the batch and print its results')
    .option('--webhook <url>', 'http(s) URL called when the batch finishes')
    .option('--top-k <k>', 'classes per result (default: FRAMEWISE_TOP_K or 3)', positiveInt('--top-k'))
    .addOption(new Option('--format <format>', 'results format with --wait (with --windows, csv is one row per segment)').choices(['jsonl', 'csv']).default('jsonl'))
    .option('--windows <W,S>', 'label every file window by window, as `label --windows` (W,S seconds, W, or auto)')
    .option('--threshold <p>', "with --windows: the segments' unknown threshold (default the model's)", unitInterval('--threshold'))
    .option('--hysteresis <h>', 'with --windows: a class holds down to threshold − h (default 0.1)', unitInterval('--hysteresis'))
    .option('--min-segment <sec>', 'with --windows: shorter segments are absorbed by a neighbour (default: the window length)', nonNegativeNumber('--min-segment'))
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (source: string, o) => run((c) => cmdBatch(source, o, c, io)));

  program
    .command('status')
    .description('the state of a job (clip-…) or a batch (batch-…), as JSON')
    .argument('<id>', 'job or batch id')
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (id: string) => run((c) => cmdStatus(id, c, io)));
}

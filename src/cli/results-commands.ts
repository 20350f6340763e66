/**
 * Results stored by queue mode (PostgreSQL; DATABASE_URL), without Redis:
 *   framewise results query [--label L] [--min-confidence P] [--model NAME[@VERSION]] [--batch ID]
 *                           [--path-prefix P] [--since T] [--until T] [--ok true|false] [--limit N] [--format jsonl|csv] [--out FILE]
 *   framewise results export --batch ID --out FILE.csv|FILE.jsonl [--format jsonl|csv]
 * Both read through a server-side cursor and write as they read: memory stays flat at any size.
 * A one-line JSON summary goes to stderr (`{written, out, maxRssBytes}`).
 */
import { createWriteStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify/sync';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Config } from '../config/index.js';
import { openDatabase, type Database } from '../db/database.js';
import { FramewiseError } from '../errors/index.js';
import type { LabelResult } from '../jobs/label.js';
import { batchResultLines, readBatchRow } from '../jobs/queue/batch-store.js';
import { isBatchId } from '../jobs/queue/idempotency.js';
import { queryResults, type ResultsFilter } from '../jobs/queue/results-store.js';
import { csvHeader, resultCsvRows } from '../jobs/result-csv.js';
import { positiveInt, unitInterval } from './arg-parsers.js';
import { EXIT } from './exit-codes.js';
import type { CliIo } from './queue-commands.js';

type Run = (fn: (config: Config) => Promise<number>) => Promise<void>;
type Format = 'jsonl' | 'csv';

async function withDatabase<T>(config: Config, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = openDatabase(config.queue);
  try {
    await db.ready();
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function* encode(lines: AsyncIterable<{ line: LabelResult }>, format: Format, segments: boolean, counted: { n: number }): AsyncGenerator<string> {
  if (format === 'csv') yield csvHeader(segments);
  for await (const { line } of lines) {
    counted.n++;
    yield format === 'csv' ? stringify(resultCsvRows(line, segments)) : `${JSON.stringify(line)}\n`;
  }
}

/** Write the lines to `out` (a file) or stdout, as they are read; returns how many were written. */
async function write(lines: AsyncIterable<{ line: LabelResult }>, format: Format, segments: boolean, out: string | undefined, io: CliIo): Promise<number> {
  const counted = { n: 0 };
  const target: NodeJS.WritableStream = out ? createWriteStream(out) : new Writable({ write: (chunk, _enc, cb) => (io.stdout.write(chunk) ? cb() : io.stdout.once('drain', () => cb())) });
  await pipeline(Readable.from(encode(lines, format, segments, counted)), target);
  return counted.n;
}

const summary = (io: CliIo, written: number, out: string | undefined): void => {
  io.stderr.write(`${JSON.stringify({ written, out: out ?? null, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
};

const formatOf = (given: Format | undefined, out: string | undefined): Format => given ?? (out?.toLowerCase().endsWith('.csv') ? 'csv' : 'jsonl');

interface QueryFlags {
  label?: string;
  minConfidence?: number;
  model?: string;
  batch?: string;
  pathPrefix?: string;
  since?: string;
  until?: string;
  ok?: boolean;
  limit?: number;
  format?: Format;
  out?: string;
}

async function cmdQuery(o: QueryFlags, config: Config, io: CliIo): Promise<number> {
  return withDatabase(config, async (db) => {
    if (o.batch !== undefined && !(await readBatchRow(db, o.batch))) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${o.batch}`);
    const filter: ResultsFilter = { label: o.label, minConfidence: o.minConfidence, model: o.model, batch: o.batch, pathPrefix: o.pathPrefix, since: o.since, until: o.until, ok: o.ok, limit: o.limit };
    const n = await write(queryResults(db, filter), formatOf(o.format, o.out), false, o.out, io);
    summary(io, n, o.out);
    return EXIT.OK;
  });
}

async function cmdExport(o: { batch: string; out: string; format?: Format }, config: Config, io: CliIo): Promise<number> {
  if (!isBatchId(o.batch)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${o.batch} (batch ids look like batch-<32 hex digits>)`);
  return withDatabase(config, async (db) => {
    const row = await readBatchRow(db, o.batch);
    if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${o.batch}`);
    const n = await write(batchResultLines(db, o.batch), formatOf(o.format, o.out), row.options.windows !== undefined, o.out, io);
    summary(io, n, o.out);
    return EXIT.OK;
  });
}

const bool = (v: string): boolean => {
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InvalidArgumentError('--ok must be true or false');
};

export function registerResultsCommands(program: Command, io: CliIo, run: Run): void {
  const results = program.command('results').description('results stored by queue mode (PostgreSQL, DATABASE_URL): query them, export a batch');
  results
    .command('query')
    .description('stored results by label, confidence, model, batch, path prefix and time, as JSON Lines or CSV (streamed)')
    .option('--label <label>', 'results with this label')
    .option('--min-confidence <p>', 'results at least this confident', unitInterval('--min-confidence'))
    .option('--model <name[@version]>', 'the model (any version, or one)')
    .option('--batch <id>', "a batch's files (their path as the batch listed them)")
    .option('--path-prefix <prefix>', 'paths starting with this text')
    .option('--since <time>', 'finished at or after this time (ISO 8601)')
    .option('--until <time>', 'finished before this time (ISO 8601)')
    .option('--ok <bool>', 'successes only (true) or failures only (false)', bool)
    .option('--limit <n>', 'at most this many results', positiveInt('--limit'))
    .addOption(new Option('--format <format>', 'output format (default: from --out, else jsonl)').choices(['jsonl', 'csv']))
    .option('--out <file>', 'write here (default: stdout)')
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (o: QueryFlags) => run((c) => cmdQuery(o, c, io)));
  results
    .command('export')
    .description("a batch's results (every finished file, in listing order) to a file, streamed")
    .requiredOption('--batch <id>', 'the batch')
    .requiredOption('--out <file>', 'FILE.csv or FILE.jsonl')
    .addOption(new Option('--format <format>', 'output format (default: from the extension of --out)').choices(['jsonl', 'csv']))
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)')
    .action(async (o: { batch: string; out: string; format?: Format }) => run((c) => cmdExport(o, c, io)));
}

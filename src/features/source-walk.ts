/**
 * Listing an archive as a stream: a folder walk, a glob or a manifest read row by row, one item at
 * a time, never the whole list in memory (a batch may name a million files). Each item is a file
 * to label or a problem with one part of the listing (a malformed manifest row, a folder that
 * vanished or cannot be read), which becomes that item's error; the rest goes on.
 *
 * Every item carries a key (`item`) that names it the same way on every walk of an unchanged
 * source — a file's path, or a manifest's line — so that a listing started again after a crash
 * can skip what it recorded before.
 *
 * Order: a folder's entries in name order when it holds at most {@link SORTED_FOLDER_LIMIT} of
 * them (bigger folders in the order the file system lists them), sub-folders where they sort;
 * glob matches as they are found; manifest rows in file order.
 */
import { createReadStream, type Dirent } from 'node:fs';
import { opendir, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parse as parseRow } from 'csv-parse/sync';
import fg from 'fast-glob';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { VIDEO_EXTENSIONS } from './inputs.js';

/** A batch's source: exactly one of `path` (a folder, a video or a .csv manifest), `glob` or `manifest`. */
export interface WalkSource {
  path?: string | undefined;
  glob?: string | undefined;
  manifest?: string | undefined;
}

/** Maps a path to the real path that may be read, or throws (FW_ERR_PATH_FORBIDDEN, FW_ERR_INPUT_NOT_FOUND). */
export type WalkGuard = (path: string) => Promise<string>;

export type ListedItem =
  /** A file to label: `path` as listed (absolute), `source` how results name it. */
  | { item: string; source: string; path: string }
  | { item: string; source: string; error: FramewiseError };

/** Folders with at most this many entries are listed in name order; bigger ones stream unsorted. */
export const SORTED_FOLDER_LIMIT = 10_000;

const isVideoName = (p: string): boolean => VIDEO_EXTENSIONS.has(extname(p).toLowerCase());
const fsError = (err: unknown, what: string): FramewiseError =>
  err instanceof FramewiseError ? err : new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });

/** The entries of one folder: sorted when small, else as read (memory bounded by the limit). */
async function* folderEntries(dir: string): AsyncGenerator<Dirent> {
  const handle = await opendir(dir, { bufferSize: 256 });
  const head: Dirent[] = [];
  let streaming = false;
  for await (const e of handle) {
    if (streaming) {
      yield e;
      continue;
    }
    head.push(e);
    if (head.length > SORTED_FOLDER_LIMIT) {
      streaming = true;
      yield* head.splice(0);
    }
  }
  if (!streaming) yield* head.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Video files below a folder (hidden entries skipped, symlinked folders not followed; symlinked files listed). */
async function* walkFolder(dir: string): AsyncGenerator<ListedItem> {
  let entries: AsyncGenerator<Dirent>;
  try {
    entries = folderEntries(dir);
    for await (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) yield* walkFolder(p);
      else if ((e.isFile() || e.isSymbolicLink()) && isVideoName(e.name)) yield { item: p, source: p, path: p };
    }
  } catch (err) {
    // the folder vanished or cannot be read (now, or part-way through): one error for it
    yield { item: `folder:${dir}`, source: dir, error: fsError(err, `folder ${dir}`) };
  }
}

/** A quoted field may span lines; past this many characters an unclosed quote is a malformed row. */
const MAX_ROW_CHARS = 64 * 1024;

/**
 * Manifest rows (`path` column; relative paths relative to the manifest), read line by line, each
 * row parsed on its own: a malformed row (a stray or unclosed quote) is an error at its line and
 * the rows after it are read as usual.
 */
async function* walkManifest(file: string, shown: string): AsyncGenerator<ListedItem> {
  const base = dirname(resolve(file));
  const input = createReadStream(file, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let header: string[] | undefined;
  let lineNo = 0;
  let pending = '';
  let startLine = 0;
  const malformed = (line: number, why: string): ListedItem => ({ item: `line:${line}`, source: `${shown}:${line}`, error: new FramewiseError('FW_ERR_MANIFEST_INVALID', `${shown}:${line}: malformed row (${why})`) });
  try {
    for await (const raw of lines) {
      lineNo++;
      if (pending === '') startLine = lineNo;
      const text = pending === '' ? (lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw) : `${pending}\n${raw}`;
      if (pending === '' && text.trim() === '') continue;
      let fields: string[];
      try {
        fields = (parseRow(text, { relax_column_count: true, trim: true }) as string[][])[0] ?? [];
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'CSV_ERROR';
        if (code === 'CSV_QUOTE_NOT_CLOSED' && text.length < MAX_ROW_CHARS) {
          pending = text;
          continue;
        }
        pending = '';
        yield malformed(startLine, code);
        continue;
      }
      pending = '';
      if (!header) {
        header = fields.map((c) => c.trim().toLowerCase());
        if (!header.includes('path')) throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `manifest ${shown} has no \`path\` column (header: ${header.join(',')})`);
        continue;
      }
      const p = fields[header.indexOf('path')] ?? '';
      if (p === '') yield { item: `line:${startLine}`, source: `${shown}:${startLine}`, error: new FramewiseError('FW_ERR_MANIFEST_INVALID', `${shown}:${startLine}: empty path`) };
      else yield { item: `line:${startLine}`, source: p, path: resolve(base, p) };
    }
    if (pending !== '') yield malformed(startLine, 'CSV_QUOTE_NOT_CLOSED');
  } catch (err) {
    // the file itself could not be read on (vanished, I/O error), or its header is wrong
    yield { item: 'manifest', source: shown, error: err instanceof FramewiseError ? err : fsError(err, `manifest ${shown}`) };
  } finally {
    lines.close();
    input.destroy();
  }
}

/**
 * The items of a source, streamed. `guard` checks the source itself (a folder, the manifest, the
 * glob's base folder; a failure there is one error item) and each glob match (matches it refuses
 * are left out unnamed: a glob may not reveal what lies outside the roots). Files are guarded by
 * the caller (ingest), which records their errors.
 */
export async function* walkSource(source: WalkSource, guard: WalkGuard): AsyncGenerator<ListedItem> {
  const given = [source.path, source.glob, source.manifest].filter((v) => v !== undefined);
  if (given.length !== 1) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'give exactly one of path, glob or manifest');
  const top = given[0] as string;
  let listed = 0;
  const count = async function* (items: AsyncGenerator<ListedItem>): AsyncGenerator<ListedItem> {
    for await (const i of items) {
      listed++;
      yield i;
    }
  };
  try {
    if (source.glob !== undefined) {
      const pattern = source.glob;
      for await (const m of fg.stream(pattern, { onlyFiles: true, dot: false, absolute: true, followSymbolicLinks: false, suppressErrors: true }) as AsyncIterable<string>) {
        if (!isVideoName(m)) continue;
        const allowed = await guard(m).then(
          () => true,
          () => false,
        );
        if (allowed) {
          listed++;
          yield { item: m, source: m, path: m };
        }
      }
      if (listed === 0) yield { item: 'empty', source: pattern, error: new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files match ${pattern}`) };
      return;
    }
    const real = await guard(top);
    const st = await stat(real).catch((err: unknown) => {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file or folder: ${top}`, { cause: err });
    });
    if (source.manifest !== undefined || (!st.isDirectory() && extname(real).toLowerCase() === '.csv')) {
      yield* count(walkManifest(real, top));
      return;
    }
    if (!st.isDirectory()) {
      yield { item: real, source: top, path: real };
      return;
    }
    yield* count(walkFolder(real));
    if (listed === 0) yield { item: 'empty', source: top, error: new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files in folder ${top}`) };
  } catch (err) {
    yield { item: 'source', source: top, error: toFramewiseError(err) };
  }
}

/**
 * Turning what a user points at (files, folders, globs, manifests) into a list of work items.
 * A problem with one input becomes an error item; the others go on.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve, relative } from 'node:path';
import { parse } from 'csv-parse/sync';
import fg from 'fast-glob';
import { FramewiseError } from '../errors/index.js';

export const VIDEO_EXTENSIONS = new Set(['.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.mpg', '.mpeg', '.ts', '.mts', '.m2ts', '.wmv', '.flv', '.3gp', '.ogv', '.mxf', '.y4m']);

export interface InputItem {
  /** Absolute path of the video. */
  path: string;
  /** Path as given or as written in the manifest (for reports). */
  source: string;
  label?: string | undefined;
  /** Other manifest columns. */
  extra: Record<string, string>;
}

export interface InputError {
  source: string;
  error: FramewiseError;
}

export interface Inputs {
  items: InputItem[];
  errors: InputError[];
}

const isVideoName = (p: string): boolean => VIDEO_EXTENSIONS.has(extname(p).toLowerCase());
const hasGlobChars = (s: string): boolean => /[*?[\]{}]/.test(s);

/** Video files below a folder (recursive, sorted; hidden entries skipped). */
export async function listVideos(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && isVideoName(e.name)) found.push(p);
    }
  };
  await walk(dir);
  return found;
}

export interface ManifestOptions {
  /** Require a non-empty `label` column. */
  requireLabel: boolean;
  /** When given, labels outside this set are row errors. */
  knownLabels?: readonly string[];
  /** Relative paths are relative to this folder. @defaultValue the manifest's folder */
  baseDir?: string;
}

/** Read a CSV manifest with a header (`path` required, `label` when asked; other columns kept). */
export async function readManifest(file: string, opts: ManifestOptions): Promise<Inputs> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read manifest ${file}`, { cause: err });
  }
  let rows: Record<string, string>[];
  try {
    rows = parse(text, { columns: (h: string[]) => h.map((c) => c.trim().toLowerCase()), skip_empty_lines: true, trim: true, bom: true, relax_column_count: true }) as Record<string, string>[];
  } catch (err) {
    throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `manifest ${file} is not valid CSV: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const header = rows.length > 0 ? Object.keys(rows[0] as object) : firstLineColumns(text);
  const required = opts.requireLabel ? ['path', 'label'] : ['path'];
  const missing = required.filter((c) => !header.includes(c));
  if (missing.length > 0) {
    throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `manifest ${file} lacks column(s) ${missing.join(', ')} (header: ${header.join(',') || 'none'}); expected a header with at least ${required.join(',')}`);
  }
  const base = opts.baseDir ?? dirname(resolve(file));
  const known = opts.knownLabels ? new Set(opts.knownLabels) : undefined;
  const out: Inputs = { items: [], errors: [] };
  rows.forEach((row, i) => {
    const line = i + 2;
    const source = row.path ?? '';
    if (source === '') {
      out.errors.push({ source: `${file}:${line}`, error: new FramewiseError('FW_ERR_MANIFEST_INVALID', `${file}:${line}: empty path`) });
      return;
    }
    const label = row.label;
    if (opts.requireLabel && (label === undefined || label === '')) {
      out.errors.push({ source, error: new FramewiseError('FW_ERR_MANIFEST_BAD_LABEL', `${file}:${line}: empty label for ${source}`) });
      return;
    }
    if (known && label !== undefined && label !== '' && !known.has(label)) {
      out.errors.push({ source, error: new FramewiseError('FW_ERR_MANIFEST_BAD_LABEL', `${file}:${line}: label '${label}' is not one of the model's labels (${[...known].join(', ')})`) });
      return;
    }
    const { path: _p, label: _l, ...extra } = row;
    out.items.push({ path: resolve(base, source), source, label: label === '' ? undefined : label, extra });
  });
  return out;
}

function firstLineColumns(text: string): string[] {
  const line = text.split(/\r?\n/)[0] ?? '';
  return line.trim() === '' ? [] : line.split(',').map((c) => c.trim().toLowerCase());
}

/** A folder whose sub-folders are the classes: every video below `root/<class>/` gets that label. */
export async function readClassFolders(root: string): Promise<Inputs> {
  const out: Inputs = { items: [], errors: [] };
  const entries = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    for (const p of await listVideos(join(root, e.name))) out.items.push({ path: p, source: relative(root, p), label: e.name, extra: {} });
  }
  if (out.items.length === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no videos in class folders below ${root} (expected ${root}/<class>/<video>)`);
  return out;
}

/** Labelled data for training or evaluation: a CSV manifest or a folder-per-class layout. */
export async function readLabelledData(source: string, knownLabels?: readonly string[], baseDir?: string): Promise<Inputs> {
  let st;
  try {
    st = await stat(source);
  } catch (err) {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such manifest or folder: ${source}`, { cause: err });
  }
  if (st.isDirectory()) return readClassFolders(source);
  return readManifest(source, { requireLabel: true, ...(knownLabels ? { knownLabels } : {}), ...(baseDir !== undefined ? { baseDir } : {}) });
}

/**
 * Expand `label` arguments: a file is taken as is (ffprobe decides whether it is a video), a
 * folder gives its video files, a glob its matches, a `.csv` is a manifest (label optional).
 */
export async function expandInputs(args: readonly string[]): Promise<Inputs> {
  const out: Inputs = { items: [], errors: [] };
  const add = (p: string, source: string): void => {
    out.items.push({ path: resolve(p), source, extra: {} });
  };
  for (const arg of args) {
    let st;
    try {
      st = await stat(arg);
    } catch {
      st = undefined;
    }
    if (st?.isDirectory()) {
      const vids = await listVideos(arg);
      if (vids.length === 0) out.errors.push({ source: arg, error: new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files in folder ${arg}`) });
      vids.forEach((v) => add(v, v));
    } else if (st?.isFile() && extname(arg).toLowerCase() === '.csv') {
      try {
        const m = await readManifest(arg, { requireLabel: false });
        out.items.push(...m.items);
        out.errors.push(...m.errors);
      } catch (err) {
        out.errors.push({ source: arg, error: err instanceof FramewiseError ? err : new FramewiseError('FW_ERR_MANIFEST_INVALID', String(err)) });
      }
    } else if (st) {
      add(arg, arg);
    } else if (hasGlobChars(arg)) {
      const matches = (await fg(arg, { onlyFiles: true, dot: false })).filter(isVideoName).sort();
      if (matches.length === 0) out.errors.push({ source: arg, error: new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files match ${arg}`) });
      matches.forEach((m) => add(m, m));
    } else {
      out.errors.push({ source: arg, error: new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file or folder: ${arg}`) });
    }
  }
  return out;
}

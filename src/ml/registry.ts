/**
 * The model registry: every trained head is a version of a named model.
 *
 * Layout under the registry root (`FRAMEWISE_MODELS_DIR`, default `$FRAMEWISE_CACHE_DIR/models`):
 *
 *   <root>/<name>/<version>/model.json, weights.bin, metadata.json   the head (TemporalHead format)
 *   <root>/<name>/<version>/report.json, report.html                 its validation report (when it had validation data)
 *   <root>/<name>/<version>/reports/<stamp>-<data>/report.{json,html} later `eval` runs of that version
 *   <root>/<name>/promoted.json                                       {"version": "...", "promotedAt": "..."}
 *
 * A version's metadata.json holds its id (= name), version, created, backbone id/version/dim/
 * feature kind, sampling, head and training options (with the data hash and the manifest's
 * sha256), metrics and the unknown threshold. Writes are atomic (write then rename); a version
 * folder appears complete or not at all.
 *
 * `resolveModel(ref)` turns what a user passes to `--model` into a head directory: an existing
 * directory wins; otherwise `NAME` is the promoted version of NAME and `NAME@VERSION` that version.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import { HEAD_METADATA_SCHEMA, type HeadMetadata, type TemporalHead } from './head.js';

/** Model names: a letter or digit, then letters, digits, `.`, `_`, `-` (at most 64). */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ModelRef {
  name: string;
  version: string | undefined;
}

/** Parse `NAME` or `NAME@VERSION` (`FW_ERR_CONFIG_INVALID` when malformed). */
export function parseModelRef(ref: string): ModelRef {
  const at = ref.indexOf('@');
  const name = at < 0 ? ref : ref.slice(0, at);
  const version = at < 0 ? undefined : ref.slice(at + 1);
  if (!MODEL_NAME_PATTERN.test(name) || (version !== undefined && !VERSION_PATTERN.test(version))) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid model reference '${ref}': expected NAME or NAME@VERSION (letters, digits, . _ -)`);
  }
  return { name, version };
}

export interface VersionInfo {
  name: string;
  version: string;
  dir: string;
  created: string;
  promoted: boolean;
  metadata: HeadMetadata;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

export class ModelRegistry {
  constructor(readonly root: string) {}

  static fromConfig(config: Pick<Config, 'modelsDir'>): ModelRegistry {
    return new ModelRegistry(config.modelsDir);
  }

  dirOf(name: string, version: string): string {
    return join(this.root, name, version);
  }

  /** Model names with at least one version, sorted. */
  async names(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.root, { withFileTypes: true });
    } catch {
      return [];
    }
    const out: string[] = [];
    for (const e of entries) if (e.isDirectory() && MODEL_NAME_PATTERN.test(e.name) && (await this.versionNames(e.name)).length > 0) out.push(e.name);
    return out.sort();
  }

  /** Version folder names of a model (complete ones: with metadata.json), oldest first (versions start with their UTC time stamp). */
  private async versionNames(name: string): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(join(this.root, name), { withFileTypes: true });
    } catch {
      return [];
    }
    const out: string[] = [];
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.') || !VERSION_PATTERN.test(e.name)) continue;
      try {
        await stat(join(this.root, name, e.name, 'metadata.json'));
        out.push(e.name);
      } catch {
        /* incomplete or foreign folder */
      }
    }
    return out.sort();
  }

  /** Every version of `name` (oldest first), with its metadata and whether it is promoted. */
  async versions(name: string): Promise<VersionInfo[]> {
    const promoted = await this.promotedVersion(name);
    const out: VersionInfo[] = [];
    for (const version of await this.versionNames(name)) {
      const dir = this.dirOf(name, version);
      const metadata = await readMetadata(dir);
      out.push({ name, version, dir, created: metadata.created, promoted: version === promoted, metadata });
    }
    // version names carry the second they were made: within one second, `created` (ms) orders them
    return out.sort((a, b) => a.created.localeCompare(b.created) || a.version.localeCompare(b.version));
  }

  /** The promoted version of `name`, or undefined. */
  async promotedVersion(name: string): Promise<string | undefined> {
    if (!MODEL_NAME_PATTERN.test(name)) return undefined;
    try {
      const raw = JSON.parse(await readFile(join(this.root, name, 'promoted.json'), 'utf8')) as { version?: unknown };
      return typeof raw.version === 'string' && VERSION_PATTERN.test(raw.version) ? raw.version : undefined;
    } catch {
      return undefined;
    }
  }

  /** The folder of `name@version`, or of the promoted version when no version is given. */
  async resolve(ref: ModelRef | string): Promise<string> {
    const { name, version } = typeof ref === 'string' ? parseModelRef(ref) : ref;
    const v = version ?? (await this.promotedVersion(name));
    if (v === undefined) {
      const known = await this.versionNames(name);
      throw new FramewiseError(
        'FW_ERR_MODEL_NOT_FOUND',
        known.length === 0 ? `no model '${name}' in the registry ${this.root} (and no such directory)` : `model '${name}' has no promoted version; promote one with: framewise models promote ${name}@${known[known.length - 1]}`,
      );
    }
    const dir = this.dirOf(name, v);
    if (!(await isDir(dir))) throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no version '${v}' of model '${name}' in the registry ${this.root}`);
    return dir;
  }

  /**
   * Save a trained head as a new version of `name` (its id becomes `name`). A version is promoted
   * with `promote`, or when the name has no promoted version yet (unless `promoteFirst: false`).
   * Returns the version and its folder.
   */
  async register(head: TemporalHead, name: string, opts: { promote?: boolean; promoteFirst?: boolean } = {}): Promise<{ version: string; dir: string; promoted: boolean }> {
    if (!MODEL_NAME_PATTERN.test(name)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid model name '${name}': letters, digits, . _ - (at most 64, starting with a letter or digit)`);
    const base = join(this.root, name);
    await mkdir(base, { recursive: true });
    const staging = join(base, `.staging-${process.pid}-${randomBytes(4).toString('hex')}`);
    head.annotate({ id: name });
    try {
      await head.save(staging);
      const version = head.metadata.version;
      const dir = this.dirOf(name, version);
      await rename(staging, dir);
      const promote = opts.promote === true || (opts.promoteFirst !== false && (await this.promotedVersion(name)) === undefined);
      if (promote) await this.promote(name, version);
      return { version, dir, promoted: promote };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Make `version` the one `NAME` resolves to. */
  async promote(name: string, version: string): Promise<void> {
    await this.resolve({ name, version });
    await writeJsonAtomic(join(this.root, name, 'promoted.json'), { version, promotedAt: new Date().toISOString() });
  }

  /**
   * Remove a version. The promoted version is refused unless `force` (then the model has no
   * promoted version until one is promoted). The model's folder goes when its last version does.
   */
  async remove(name: string, version: string, opts: { force?: boolean } = {}): Promise<{ wasPromoted: boolean }> {
    const dir = await this.resolve({ name, version });
    const wasPromoted = (await this.promotedVersion(name)) === version;
    if (wasPromoted && !opts.force) {
      throw new FramewiseError('FW_ERR_MODEL_CONFLICT', `${name}@${version} is the promoted version; promote another first or force the removal (--force)`);
    }
    // rename first so that a half-removed folder is never read as a version
    const trash = join(this.root, name, `.removing-${version}-${randomBytes(3).toString('hex')}`);
    await rename(dir, trash);
    await rm(trash, { recursive: true, force: true });
    if (wasPromoted) await rm(join(this.root, name, 'promoted.json'), { force: true });
    if ((await this.versionNames(name)).length === 0) await rm(join(this.root, name), { recursive: true, force: true });
    return { wasPromoted };
  }

  /** `dir` when it is a version folder of this registry: its name and version. */
  locate(dir: string): ModelRef | undefined {
    const rel = resolve(dir).slice(resolve(this.root).length + 1);
    if (!resolve(dir).startsWith(`${resolve(this.root)}/`)) return undefined;
    const parts = rel.split('/');
    if (parts.length !== 2 || !MODEL_NAME_PATTERN.test(parts[0] as string) || !VERSION_PATTERN.test(parts[1] as string)) return undefined;
    return { name: parts[0] as string, version: parts[1] as string };
  }
}

async function readMetadata(dir: string): Promise<HeadMetadata> {
  try {
    return HEAD_METADATA_SCHEMA.parse(JSON.parse(await readFile(join(dir, 'metadata.json'), 'utf8')));
  } catch (err) {
    throw new FramewiseError('FW_ERR_MODEL_INVALID', `invalid metadata.json in ${dir}: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`, { cause: err });
  }
}

/**
 * The head directory for a `--model` value (for the CLI, workers and the API):
 * - undefined → the configured default (`FRAMEWISE_MODEL_DIR`, else the bundled head);
 * - an existing directory → that directory (a path always wins over a registry name);
 * - `NAME` → the promoted version of NAME in the registry; `NAME@VERSION` → that version.
 * Anything else is `FW_ERR_MODEL_NOT_FOUND` (or `FW_ERR_CONFIG_INVALID` for a malformed reference).
 */
export async function resolveModel(ref: string | undefined, config: Pick<Config, 'modelDir' | 'modelsDir'>): Promise<string> {
  if (ref === undefined || ref === '') return config.modelDir;
  const asPath = resolve(ref);
  if (await isDir(asPath)) return asPath;
  // something path-like that does not exist: report the missing directory, as before the registry
  if (ref.includes('/') || ref.includes('\\') || ref.startsWith('.')) {
    throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no model at ${asPath} (no such directory)`);
  }
  return ModelRegistry.fromConfig(config).resolve(ref);
}

/** The promoted version of a registered model, or undefined (for the queue: results and `missing` checks use it). */
export async function promotedVersion(name: string, config: Pick<Config, 'modelsDir'>): Promise<string | undefined> {
  return ModelRegistry.fromConfig(config).promotedVersion(name);
}

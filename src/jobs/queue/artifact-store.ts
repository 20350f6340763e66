/**
 * The artifact store: large intermediate data of a job (decoded rgb24 frames) that must not go
 * through Redis. Stages reference artifacts by key; the embed stage deletes them once embedded.
 *
 * `ArtifactStore` is the seam for an S3-compatible store; `LocalArtifactStore` is a directory
 * (by default `FRAMEWISE_DATA_DIR/artifacts`) that every worker of a deployment shares.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FramewiseError, toStorageError } from '../../errors/index.js';
import { KEYPOINT_INPUT_SIZES } from '../../ml/streams/frame-stream.js';

export interface ArtifactStore {
  /** Store bytes under `key`, replacing what was there (atomically: readers see old or new, never half). */
  put(key: string, data: Uint8Array): Promise<void>;
  /** The bytes, or undefined when there is no such artifact. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Remove an artifact; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Where artifacts live, for logs and errors. */
  readonly location: string;
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

/** Keys are relative, slash-separated names of letters, digits, `.`, `_` and `-` (no `..`). */
export function validateArtifactKey(key: string): string {
  if (!KEY.test(key) || key.split('/').some((p) => p === '..' || p === '.') || key.length > 512) {
    throw new FramewiseError('FW_ERR_INTERNAL', `invalid artifact key '${key}': expected slash-separated names of letters, digits, '.', '_' and '-'`);
  }
  return key;
}

/** Decoded frames of a clip: one artifact per flow (a clip over several streams: its rgb output). */
export const framesArtifactKey = (clipId: string): string => validateArtifactKey(`frames/${clipId}.rgb`);

/** One decoded output of a clip over several streams: rgb (`framesArtifactKey`), motion, or letterboxed squares of a side. */
export function streamArtifactKey(clipId: string, output: 'rgb' | 'motion' | 'letterbox', size: number): string {
  if (output === 'rgb') return framesArtifactKey(clipId);
  return validateArtifactKey(`frames/${clipId}.${output === 'motion' ? 'motion' : `letterbox${size}`}.rgb`);
}

/** Every artifact a clip's decode may leave: removed once embedded, and when the clip fails or is cancelled. */
export function clipArtifactKeys(clipId: string): string[] {
  const sides = [...new Set(Object.values(KEYPOINT_INPUT_SIZES))];
  return [framesArtifactKey(clipId), streamArtifactKey(clipId, 'motion', 0), ...sides.map((s) => streamArtifactKey(clipId, 'letterbox', s))];
}

export class LocalArtifactStore implements ArtifactStore {
  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  private file(key: string): string {
    return join(this.root, validateArtifactKey(key));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const file = this.file(key);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(tmp, data);
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      // a full or read-only data folder has its own codes; anything else stays an artifact-store error
      throw toStorageError(err, `artifact ${key} (FRAMEWISE_DATA_DIR)`, 'FW_ERR_ARTIFACT_STORE');
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const buf = await readFile(this.file(key));
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new FramewiseError('FW_ERR_ARTIFACT_STORE', `cannot read artifact ${key} in ${this.root}`, { cause: err });
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }
}

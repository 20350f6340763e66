/**
 * A synthetic archive: one small clip copied N times, each copy with a distinct trailing block
 * (a `free` MP4 box, which players and ffprobe skip), so that every file decodes to the same
 * frames but hashes differently — many distinct jobs, each cheap. With `seedFeatures`, the feature
 * store holds every copy's features (the base clip's, which are every copy's: same frames), so the
 * workers' decode stage is a store hit and a batch of thousands of files runs in seconds.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FeatureStore } from '../../src/features/feature-store.js';
import { featureKeyOf } from '../../src/jobs/queue/idempotency.js';
import type { ModelInfo } from '../../src/jobs/queue/model-info.js';

export interface ArchiveFile {
  path: string;
  contentHash: string;
}

/** The bytes of copy `i`: the clip, then an 16-byte MP4 `free` box holding `i`. */
export function copyBytes(base: Buffer, i: number): Buffer {
  const box = Buffer.alloc(16);
  box.writeUInt32BE(16, 0);
  box.write('free', 4, 'latin1');
  box.writeBigUInt64BE(BigInt(i), 8);
  return Buffer.concat([base, box]);
}

/** `n` copies of `baseClip` under `dir` (`perFolder` per sub-folder `d<k>/`, names `clip-<i>.mp4`), from index `from`. */
export async function makeArchive(dir: string, baseClip: string, n: number, opts: { perFolder?: number; from?: number } = {}): Promise<ArchiveFile[]> {
  const base = await readFile(baseClip);
  const per = opts.perFolder ?? 1000;
  const from = opts.from ?? 0;
  const out: ArchiveFile[] = [];
  for (let j = 0; j < n; j++) {
    const i = from + j;
    const folder = join(dir, `d${Math.floor(i / per)}`);
    if (j === 0 || i % per === 0) await mkdir(folder, { recursive: true });
    const bytes = copyBytes(base, i);
    const path = join(folder, `clip-${String(i).padStart(6, '0')}.mp4`);
    await writeFile(path, bytes);
    out.push({ path, contentHash: createHash('sha256').update(bytes).digest('hex') });
  }
  return out;
}

/**
 * Store, for each content hash, the features the model's backbone gives `baseClip` (read from the
 * store under the base clip's own hash: label it once first).
 */
export async function seedFeatures(store: FeatureStore, model: ModelInfo, baseHash: string, hashes: readonly string[]): Promise<void> {
  const ref = { backbone: model.backbone, sampling: model.sampling };
  const seq = await store.get(featureKeyOf({ ...ref, contentHash: baseHash }));
  if (!seq) throw new Error(`the base clip (${baseHash.slice(0, 12)}…) has no features in the store yet: label it first`);
  for (const h of hashes) await store.put({ ...seq, key: featureKeyOf({ ...ref, contentHash: h }) });
}

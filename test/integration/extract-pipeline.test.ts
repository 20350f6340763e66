/**
 * The pipelined extract (probe started with the hash, decode-ahead depth that adapts to the
 * backbone, frames spooled through a file) gives the same features, bit for bit, as the plain
 * sequential path: probe, then one decode through the pipe, then one embed per file, with the
 * same backbone. Outcomes stay in input order, a bad
 * file in the middle stays its own outcome, and the per-stage timings are filled in.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { Extractor, type ExtractOutcome } from '../../src/features/extract.js';
import { FeatureStore } from '../../src/features/feature-store.js';
import { STAGES } from '../../src/features/pipeline-schedule.js';
import { openBackbone, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { decodeFrames, probe, streamFrames } from '../../src/media/ffmpeg.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { backboneIdentity } from '../../src/ml/backbone-specs.js';
import type { Backbone } from '../../src/ml/backbone.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';

let dir: string;
let files: string[];
let backbone: Backbone;
const policy = { kind: 'uniform', frames: 8 } as const;
const geometry = { size: 224, crop: 'center' } as const;
const rt = (): ReturnType<typeof runtimeFromConfig> => runtimeFromConfig(loadConfig({}), { cacheDir: dir });

beforeAll(async () => {
  dir = await makeTempDir('fw-pipeline-');
  files = [
    await makeTestsrc(join(dir, 'a.mp4'), { seconds: 2, size: '320x240' }),
    join(dir, 'b.mp4'),
    join(dir, 'not-a-video.mp4'),
    await makeTestsrc(join(dir, 'c.mp4'), { seconds: 3, size: '480x270', fps: '30' }),
    join(dir, 'd.mp4'),
    await makeTestsrc(join(dir, 'e.mp4'), { seconds: 1, size: '176x144', fps: '12' }),
  ];
  await makeClip(randomClipSpec('pan_left', 11), join(dir, 'b.mp4'));
  await makeClip(randomClipSpec('zoom_in', 12), join(dir, 'd.mp4'));
  await writeFile(join(dir, 'not-a-video.mp4'), 'plain text, not a video\n'.repeat(20));
  backbone = await openBackbone(rt());
}, 300_000);

afterAll(async () => {
  await backbone?.dispose();
  await removeDir(dir);
});

/** The plain sequential path: probe, one decode through the pipe (no spool file), one embed; nothing ahead, nothing in parallel. */
async function sequentialFeatures(path: string): Promise<{ data: Float32Array; times: number[]; frames: Uint8Array }> {
  const info = await probe(path, rt().tools);
  const chunks: Uint8Array[] = [];
  const times: number[] = [];
  for await (const f of streamFrames(info, policy, geometry, { tools: rt().tools })) {
    chunks.push(f.data);
    times.push(f.time);
  }
  const frames = Buffer.concat(chunks);
  return { data: await backbone.embed(frames, chunks.length), times, frames };
}

async function collect(extractor: Extractor): Promise<Array<ExtractOutcome<{ path: string }>>> {
  const out: Array<ExtractOutcome<{ path: string }>> = [];
  for await (const o of extractor.extractMany(files.map((path) => ({ path })))) out.push(o);
  return out;
}

describe('pipelined extract', () => {
  it('a decode spooled through a file gives the pipe\'s frames and times, and leaves no file behind', async () => {
    const spoolDir = join(dir, 'spool');
    await mkdir(spoolDir);
    for (const f of [files[0], files[3]] as string[]) {
      const info = await probe(f, rt().tools);
      const ref = await sequentialFeatures(f);
      const spooled = await decodeFrames(info, policy, geometry, { tools: rt().tools, spoolDir });
      expect(spooled.times).toEqual(ref.times);
      expect(Buffer.from(spooled.data).equals(Buffer.from(ref.frames))).toBe(true);
    }
    expect(await readdir(spoolDir)).toEqual([]);
  });

  it('gives the sequential path\'s features bit for bit, in input order, with per-stage timings', async () => {
    const identity = await backboneIdentity(rt().backbone, rt().featureKind, rt().modelUrl);
    const store = new FeatureStore(join(dir, 'store'));
    const make = (): Extractor => new Extractor({ tools: rt().tools, store, identity, sampling: policy, geometry, openBackbone: () => Promise.resolve(backbone) }, true);

    const extractor = make();
    const outcomes = await collect(extractor);
    expect(outcomes.map((o) => o.item.path)).toEqual(files);
    const bad = outcomes[2];
    expect(bad?.ok).toBe(false);
    if (bad && !bad.ok) expect(bad.error.code).toBe('FW_ERR_MEDIA_NOT_VIDEO');

    for (const [i, o] of outcomes.entries()) {
      if (i === 2) continue;
      expect(o.ok, files[i]).toBe(true);
      if (!o.ok) continue;
      expect(o.cached).toBe(false);
      const ref = await sequentialFeatures(files[i] as string);
      expect(o.seq.times).toEqual(ref.times);
      expect(o.seq.count * o.seq.dim).toBe(ref.data.length);
      // bit for bit: the same bytes, not just close floats
      expect(Buffer.from(o.seq.data.buffer, o.seq.data.byteOffset, o.seq.data.byteLength).equals(Buffer.from(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength)), files[i]).toBe(true);
    }
    expect(extractor.stats).toMatchObject({ decoded: 5, embedded: 5, cached: 0, failed: 1 });
    for (const s of STAGES) {
      if (s === 'decodeWaitMs') continue; // may be 0 when every decode was ready in time
      expect(extractor.stats.timings[s], s).toBeGreaterThan(0);
    }

    // the same files again: all from the store, the same bytes
    const again = make();
    const second = await collect(again);
    expect(again.stats).toMatchObject({ decoded: 0, embedded: 0, cached: 5, failed: 1 });
    for (const [i, o] of second.entries()) {
      const first = outcomes[i];
      if (!o.ok || !first?.ok) continue;
      expect(o.cached).toBe(true);
      expect(Array.from(o.seq.data)).toEqual(Array.from(first.seq.data));
    }
  }, 300_000);
});

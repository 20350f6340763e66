/**
 * Several clips in one ffmpeg process (`decodeClips`) give, clip by clip, exactly what
 * `decodeFrames` gives on its own: the same frames byte for byte and the same times, or the same
 * documented error — with bad clips in the group (cut short behind an intact index, damaged
 * data, a file gone since its probe), which are decoded again alone rather than judged from a
 * shared stderr. The same for the multi-output decode of several streams (`decodeMultiClips`
 * against `decodeMulti`: rgb, motion and letterboxed outputs).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramewiseError } from '../../src/errors/index.js';
import { decodeClips, type ClipDecode } from '../../src/media/batch-decode.js';
import { decodeFrames, probe, type FrameBatch, type VideoInfo } from '../../src/media/ffmpeg.js';
import { decodeMulti, decodeMultiClips, type MultiDecodeRequest, type MultiDecodeResult } from '../../src/media/multi-decode.js';
import { makeClip, randomClipSpec, runFfmpeg } from '../../src/media/synthetic.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';

let dir: string;
const p = (name: string): string => join(dir, name);
const policy = { kind: 'uniform', frames: 8 } as const;
const geometry = { size: 96, crop: 'center' } as const;
const infos = new Map<string, VideoInfo>();

beforeAll(async () => {
  dir = await makeTempDir('fw-batchdecode-');
  await makeTestsrc(p('a.mp4'), { seconds: 2, size: '320x240' });
  await makeClip(randomClipSpec('pan_left', 5), p('b.mp4'));
  await makeTestsrc(p('c.mp4'), { seconds: 3, size: '480x270', fps: '30', extra: ['-bf', '2'] });
  await makeTestsrc(p('d.mkv'), { seconds: 2, size: '176x144', fps: '12' });
  await makeTestsrc(p('wide.mp4'), { seconds: 2, size: '320x180' });
  // moov first, then the data cut at 40 %: the index promises 4 s, the frames stop early
  await makeTestsrc(p('whole.mp4'), { seconds: 4, size: '320x240', extra: ['-movflags', '+faststart'] });
  const whole = await readFile(p('whole.mp4'));
  await writeFile(p('cut.mp4'), whole.subarray(0, Math.floor(whole.length * 0.4)));
  // the same, with the coded data replaced by noise (the index intact)
  const moovEnd = whole.indexOf('mdat') + 4;
  await writeFile(p('noise.mp4'), Buffer.concat([whole.subarray(0, moovEnd), randomBytes(whole.length - moovEnd)]));
  await runFfmpeg(['-y', '-v', 'error', '-i', p('a.mp4'), '-c', 'copy', p('gone.mp4')]);
  for (const f of ['a.mp4', 'b.mp4', 'c.mp4', 'd.mkv', 'wide.mp4', 'cut.mp4', 'noise.mp4', 'gone.mp4']) infos.set(f, await probe(p(f)));
}, 120_000);

afterAll(async () => {
  await removeDir(dir);
});

const clip = (name: string): ClipDecode => ({ info: infos.get(name) as VideoInfo, policy, geometry });
const alone = (name: string): Promise<FrameBatch | string> => decodeFrames(infos.get(name) as VideoInfo, policy, geometry).catch((e: FramewiseError) => e.code);
const view = (r: FrameBatch | FramewiseError | string): unknown =>
  typeof r === 'string' ? r : r instanceof FramewiseError ? r.code : { count: r.count, size: r.size, times: r.times, sha: Buffer.from(r.data).toString('base64').length + ':' + Buffer.from(r.data).subarray(0, 64).toString('hex') };

describe('decodeClips', () => {
  it('good clips of different sizes, rates and containers: each exactly as decodeFrames gives it', async () => {
    const names = ['a.mp4', 'b.mp4', 'c.mp4', 'd.mkv', 'wide.mp4'];
    const together = await decodeClips(names.map(clip));
    for (const [i, name] of names.entries()) {
      const a = together[i];
      const b = await alone(name);
      expect(a instanceof FramewiseError, name).toBe(false);
      expect(typeof b, name).toBe('object');
      expect((a as FrameBatch).times, name).toEqual((b as FrameBatch).times);
      expect(Buffer.from((a as FrameBatch).data).equals(Buffer.from((b as FrameBatch).data)), name).toBe(true);
      expect((a as FrameBatch).count).toBeGreaterThan(1);
    }
  });

  it('bad clips in the group get their own error, the good ones their frames', async () => {
    const names = ['cut.mp4', 'a.mp4', 'noise.mp4', 'c.mp4'];
    const together = await decodeClips(names.map(clip));
    const expected = await Promise.all(names.map(alone));
    expect(together.map(view)).toEqual(expected.map(view));
    expect(expected[0]).toBe('FW_ERR_MEDIA_TRUNCATED');
    expect(typeof expected[1]).toBe('object');
  });

  it('a file gone since its probe fails the process: every clip is decoded again alone', async () => {
    await rm(p('gone.mp4'));
    const names = ['a.mp4', 'gone.mp4', 'b.mp4'];
    const together = await decodeClips(names.map(clip));
    expect(together[1]).toBeInstanceOf(FramewiseError);
    expect(view(together[0] as FrameBatch)).toEqual(view(await alone('a.mp4')));
    expect(view(together[2] as FrameBatch)).toEqual(view(await alone('b.mp4')));
  });
});

describe('decodeMultiClips', () => {
  const digest = (r: MultiDecodeResult | FramewiseError | string): unknown => {
    if (typeof r === 'string') return r;
    if (r instanceof FramewiseError) return r.code;
    const h = (d: Uint8Array | undefined): string | undefined => (d ? `${d.length}:${Buffer.from(d).toString('base64')}` : undefined);
    return { times: r.times, rgb: h(r.rgb?.data), motion: h(r.motion?.data), letterbox: r.letterbox?.map((b) => ({ content: b.content, data: h(b.data) })) };
  };
  const requests: MultiDecodeRequest[] = [{ motion: geometry }, { rgb: geometry, motion: geometry }, { rgb: geometry, motion: geometry, letterbox: [64] }];

  it.each(requests.map((r) => [Object.keys(r).join('+'), r] as const))('%s: each clip of a group exactly as decodeMulti gives it, bad clips their own error', async (_, request) => {
    const names = ['a.mp4', 'cut.mp4', 'c.mp4', 'd.mkv', 'noise.mp4', 'wide.mp4'];
    const together = await decodeMultiClips(names.map((n) => ({ info: infos.get(n) as VideoInfo, policy, request })));
    const expected = await Promise.all(names.map((n) => decodeMulti(infos.get(n) as VideoInfo, policy, request).catch((e: FramewiseError) => e.code)));
    expect(together.map(digest)).toEqual(expected.map(digest));
    expect(together.filter((r) => !(r instanceof FramewiseError)).length).toBeGreaterThanOrEqual(4);
  });
});

/**
 * The in-process MP4 reader (`readMp4Probe`) against ffprobe, the oracle: on files made here with
 * the real ffmpeg (edit lists, trims, offset timestamps, B-frames with and without edit lists,
 * rotation matrices, anamorphic pixels, variable frame rate, odd sizes, 4:2:2/4:4:4/10-bit,
 * scaling matrices, audio, QuickTime) `probe` gives the same `VideoInfo` whether it reads the
 * file itself or asks ffprobe, and it does read them itself; files it must not read (fragmented,
 * negative composition offsets, other codecs, field coding, mirrored or scaled matrices, two video
 * tracks, truncated) go to ffprobe, with the same answer or the same documented error. Then every
 * clip of `../shared/datasets/surv_fight` and `egogestar_dev` (when they are beside the project).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramewiseError } from '../../src/errors/index.js';
import { probe, type VideoInfo } from '../../src/media/ffmpeg.js';
import { readMp4Probe } from '../../src/media/mp4-probe.js';
import { runFfmpeg } from '../../src/media/synthetic.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { DATASETS } from '../helpers/real-data.js';

let dir: string;
const p = (name: string): string => join(dir, name);

const SRC = ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '2'];
const X264 = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
const SINE = ['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '2'];

/** Files the reader must read itself: name → ffmpeg arguments (the output is appended). */
const OWN: Record<string, string[]> = {
  'plain.mp4': [...SRC, ...X264],
  'bframes.mp4': [...SRC, ...X264, '-bf', '3'],
  'faststart.mp4': [...SRC, ...X264, '-bf', '2', '-movflags', '+faststart'],
  'no-editlist.mp4': [...SRC, ...X264, '-bf', '2', '-use_editlist', '0'],
  'ts-offset.mp4': [...SRC, ...X264, '-output_ts_offset', '3'],
  'anamorphic.mp4': [...SRC, ...X264, '-vf', 'setsar=4/3'],
  'aspect.mp4': [...SRC, ...X264, '-aspect', '16:9'],
  'vfr.mp4': [...SRC, ...X264, '-vf', "setpts='(N+if(gt(N,10),8,0))/25/TB'", '-fps_mode', 'vfr'],
  'odd-size.mp4': ['-f', 'lavfi', '-i', 'testsrc2=size=322x242:rate=25', '-t', '2', ...X264],
  'ntsc.mp4': ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30000/1001', '-t', '2', ...X264, '-bf', '2'],
  'timescale-1000.mp4': [...SRC, ...X264, '-video_track_timescale', '1000'],
  'audio.mp4': [...SRC, ...SINE, ...X264, '-bf', '2', '-c:a', 'aac'],
  'audio-first.mp4': [...SINE, ...SRC, ...X264, '-c:a', 'aac'],
  'quicktime.mov': [...SRC, ...X264, '-bf', '2', '-f', 'mov'],
  'high444.mp4': [...SRC, '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv444p'],
  'high422.mp4': [...SRC, '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv422p'],
  'high10.mp4': [...SRC, '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p10le'],
  'scaling-matrix.mp4': [...SRC, ...X264, '-x264-params', 'cqm=jvt'],
};

/** Files left to ffprobe: name → ffmpeg arguments. */
const FFPROBE: Record<string, string[]> = {
  'fragmented.mp4': [...SRC, ...X264, '-movflags', 'frag_keyframe+empty_moov'],
  'negative-cts.mp4': [...SRC, ...X264, '-bf', '2', '-movflags', 'negative_cts_offsets'],
  'mpeg4.mp4': [...SRC, '-c:v', 'mpeg4'],
  'interlaced.mp4': [...SRC, ...X264, '-flags', '+ildct+ilme', '-x264-params', 'interlaced=1'],
  'two-videos.mp4': [...SRC, '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10', '-t', '2', ...X264, '-map', '0', '-map', '1'],
};

const U = 0x10000;
const W = 0x40000000;
/** tkhd matrices written into a copy of bframes.mp4: name → (matrix, read in-process?). */
const MATRICES: Record<string, { m: number[]; own: boolean }> = {
  'rot90.mp4': { m: [0, U, 0, -U, 0, 0, 0, 0, W], own: true },
  'rot180.mp4': { m: [-U, 0, 0, 0, -U, 0, 0, 0, W], own: true },
  'rot270.mp4': { m: [0, -U, 0, U, 0, 0, 0, 0, W], own: true },
  'rot90-translated.mp4': { m: [0, U, 0, -U, 0, 0, 240 * U, 0, W], own: true },
  'mirror.mp4': { m: [-U, 0, 0, 0, U, 0, 0, 0, W], own: false },
  'scaled.mp4': { m: [2 * U, 0, 0, 0, U, 0, 0, 0, W], own: false },
  'rot45.mp4': { m: [46341, 46341, 0, -46341, 46341, 0, 0, 0, W], own: false },
};

/** A copy of `src` whose first track header (the video's) carries `matrix`. */
async function withMatrix(src: string, out: string, matrix: number[]): Promise<void> {
  const b = await readFile(src);
  const at = b.indexOf('tkhd') + 4;
  expect(b[at]).toBe(0); // version 0: the matrix is 40 bytes into the payload
  matrix.forEach((v, i) => b.writeInt32BE(v, at + 40 + 4 * i));
  await writeFile(out, b);
}

async function both(path: string): Promise<{ own: VideoInfo | string; ffprobe: VideoInfo | string }> {
  const code = (e: unknown): string => (e instanceof FramewiseError ? e.code : String(e));
  return {
    own: await probe(path).catch(code),
    ffprobe: await probe(path, undefined, { reader: 'ffprobe' }).catch(code),
  };
}

beforeAll(async () => {
  dir = await makeTempDir('fw-mp4probe-');
  for (const [name, args] of Object.entries({ ...OWN, ...FFPROBE })) await runFfmpeg(['-y', '-v', 'error', ...args, p(name)]);
  // edit lists that trim the start (media time > 0), with and without an empty edit before
  await runFfmpeg(['-y', '-v', 'error', '-ss', '0.5', '-i', p('bframes.mp4'), '-c', 'copy', p('trimmed.mp4')]);
  await runFfmpeg(['-y', '-v', 'error', '-ss', '0.7', '-i', p('bframes.mp4'), '-c', 'copy', '-output_ts_offset', '2', p('trimmed-offset.mp4')]);
  for (const [name, { m }] of Object.entries(MATRICES)) await withMatrix(p('bframes.mp4'), p(name), m);
  // the audio track's stsc names a chunk that does not exist (ffprobe refuses the whole file)
  const audio = await readFile(p('audio.mp4'));
  const stsc = audio.indexOf('stsc', audio.indexOf('soun'));
  expect(stsc).toBeGreaterThan(0);
  audio.writeUInt32BE(1000, stsc + 12 + 12 * (audio.readUInt32BE(stsc + 8) - 1)); // first_chunk of its last entry
  await writeFile(p('audio-bad-stsc.mp4'), audio);
  // cut short: the moov at the end is gone; and the mdat of a faststart file overruns the file
  const whole = await readFile(p('bframes.mp4'));
  await writeFile(p('cut.mp4'), whole.subarray(0, Math.floor(whole.length / 2)));
  const fast = await readFile(p('faststart.mp4'));
  await writeFile(p('cut-faststart.mp4'), fast.subarray(0, Math.floor(fast.length / 2)));
}, 240_000);

afterAll(async () => {
  await removeDir(dir);
});

describe('readMp4Probe against ffprobe', () => {
  const own = [...Object.keys(OWN), 'trimmed.mp4', 'trimmed-offset.mp4', ...Object.entries(MATRICES).filter(([, v]) => v.own).map(([k]) => k)];
  it.each(own)('%s: read in-process, the same VideoInfo as ffprobe', async (name) => {
    const r = await readMp4Probe(p(name), (await stat(p(name))).size);
    expect('fallback' in r ? r.fallback : 'read').toBe('read');
    const { own: a, ffprobe: b } = await both(p(name));
    expect(typeof a).toBe('object');
    expect(a).toEqual(b);
  });

  const left = [...Object.keys(FFPROBE), ...Object.entries(MATRICES).filter(([, v]) => !v.own).map(([k]) => k), 'cut.mp4', 'cut-faststart.mp4', 'audio-bad-stsc.mp4'];
  it.each(left)('%s: left to ffprobe, the same answer or error', async (name) => {
    const r = await readMp4Probe(p(name), (await stat(p(name))).size);
    expect('fallback' in r).toBe(true);
    const { own: a, ffprobe: b } = await both(p(name));
    expect(a).toEqual(b);
  });

  it('what the fixtures show: trims, offsets, rotations and anamorphic pixels are really there', async () => {
    const info = async (name: string): Promise<VideoInfo> => probe(p(name), undefined, { reader: 'ffprobe' });
    expect((await info('trimmed.mp4')).durationSec).toBeLessThan(1.9);
    expect((await info('ts-offset.mp4')).startTime).toBe(3);
    expect((await info('no-editlist.mp4')).startTime).toBeGreaterThan(0);
    expect((await info('rot90.mp4')).rotation).toBe(90);
    expect((await info('rot270.mp4')).rotation).toBe(270);
    expect((await info('rot90.mp4')).width).toBe(240);
    expect((await info('anamorphic.mp4')).sar).toBeCloseTo(4 / 3, 9);
    expect((await info('odd-size.mp4')).width).toBe(322);
    expect((await info('vfr.mp4')).fps).not.toBe(25);
    expect((await info('mirror.mp4')).rotation).toBe(180); // ffprobe's reading of a mirror: why it is not read in-process
    expect(await probe(p('cut.mp4')).catch((e: FramewiseError) => e.code)).toBe('FW_ERR_MEDIA_CORRUPT');
    expect(typeof (await both(p('audio-bad-stsc.mp4'))).ffprobe).toBe('string'); // refused
  });
});

/** Every video file under a folder. */
async function videos(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /\.(mp4|mov|m4v|avi|mkv|webm)$/i.test(e.name)) out.push(join(e.parentPath, e.name));
  }
  return out.sort();
}

describe.each(['surv_fight', 'egogestar_dev'])('every clip of ../shared/datasets/%s', (name) => {
  const root = join(DATASETS, name);
  it.runIf(existsSync(root))(
    'probe gives ffprobe’s VideoInfo for every clip, reading every H.264 MP4 in-process',
    async () => {
      const files = await videos(root);
      expect(files.length).toBeGreaterThan(100);
      let read = 0;
      const fallbacks = new Map<string, number>();
      for (const f of files) {
        const r = await readMp4Probe(f, (await stat(f)).size);
        if ('json' in r) read++;
        else fallbacks.set(r.fallback, (fallbacks.get(r.fallback) ?? 0) + 1);
        const { own: a, ffprobe: b } = await both(f);
        expect(a, f).toEqual(b);
      }
      console.log(`${name}: ${files.length} clips, ${read} read in-process; left to ffprobe: ${JSON.stringify(Object.fromEntries(fallbacks))}`);
      // what the reader leaves to ffprobe here is another codec (MPEG-4 part 2), never an H.264 MP4
      for (const why of fallbacks.keys()) expect(why).toMatch(/sample entry 'mp4v'/);
      expect(read).toBeGreaterThan(files.length * 0.9);
    },
    900_000,
  );
});

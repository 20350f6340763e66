/** One ffmpeg decode for several streams (rgb, motion, letterbox) on clips generated here. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrames, probe, streamFrames } from '../../src/media/ffmpeg.js';
import { decodeMulti, letterboxContent } from '../../src/media/multi-decode.js';
import { streamMulti, type MultiFrame } from '../../src/media/multi-stream.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';
import { runFfmpeg } from '../../src/media/synthetic.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';

let dir: string;
const p = (name: string): string => join(dir, name);
const uniform8 = { kind: 'uniform' as const, frames: 8 };
const square = { size: 112, crop: 'center' as const };

beforeAll(async () => {
  dir = await makeTempDir();
  await Promise.all([
    makeTestsrc(p('wide.mp4'), { seconds: 2, size: '320x180' }),
    // MPEG-TS from ffmpeg: its timestamps do not start at 0 (issue: they must decode like the MP4)
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25:duration=2', '-c:v', 'mpeg2video', '-q:v', '2', p('x.ts')]),
    // 6 frames/s: the windows grid of 2 s windows with 16 frames (8 frames/s) samples the very first frame
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=6:duration=3', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', p('slow.mp4')]),
    // a still picture for 2 s: no motion anywhere
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-frames:v', '1', p('still.png')]),
  ]);
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=224x168:rate=10:duration=1.2', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv444p', '-qp', '0', p('lossless.mp4')]);
  await runFfmpeg(['-loop', '1', '-i', p('still.png'), '-t', '2', '-r', '25', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv444p', '-qp', '0', p('static.mp4')]);
});
afterAll(async () => {
  if (dir) await removeDir(dir);
});

const mean = (xs: Uint8Array): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const max = (xs: Uint8Array): number => xs.reduce((a, b) => Math.max(a, b), 0);

describe('decodeMulti', () => {
  it('gives the same rgb frames as decodeFrames, and motion and letterboxed frames of the same count', async () => {
    const info = await probe(p('wide.mp4'));
    const single = await decodeFrames(info, uniform8, square);
    const multi = await decodeMulti(info, uniform8, { rgb: square, motion: square, letterbox: [96] });
    expect(multi.rgb?.count).toBe(8);
    expect(Buffer.from(multi.rgb?.data as Uint8Array).equals(Buffer.from(single.data))).toBe(true);
    expect(multi.times).toEqual(single.times);
    expect(multi.motion?.count).toBe(8);
    expect(multi.motion?.data.length).toBe(8 * 112 * 112 * 3);
    // testsrc moves: the differences are not all black, and darker than the pictures
    const m = mean(multi.motion?.data as Uint8Array);
    expect(m).toBeGreaterThan(0.5);
    expect(m).toBeLessThan(mean(single.data));
    const lb = multi.letterbox?.[0];
    expect(lb?.count).toBe(8);
    expect(lb?.size).toBe(96);
    // 16:9 in a square: bars above and below
    expect(lb?.content).toEqual(letterboxContent(320, 180, 96));
    expect(lb?.content.w).toBe(1);
    expect(lb?.content.h).toBeCloseTo(54 / 96, 5);
    const row = (y: number): Uint8Array => (lb?.data as Uint8Array).subarray(y * 96 * 3, (y + 1) * 96 * 3);
    expect(max(row(2))).toBeLessThan(20); // the black bar
    expect(mean(row(48))).toBeGreaterThan(20); // the picture
  });

  it('a still video gives black differences', async () => {
    const info = await probe(p('static.mp4'));
    const multi = await decodeMulti(info, uniform8, { motion: square });
    expect(multi.motion?.count).toBe(8);
    // at most a rounding level of difference anywhere
    expect(max(multi.motion?.data as Uint8Array)).toBeLessThanOrEqual(2);
  });

  it('motion is |frame_t − frame_t−1| of consecutive source frames, at frame t\'s own time (the first black)', async () => {
    // every source frame sampled (fps = the clip's rate), so frame t's predecessor is frame t − 1 of the rgb output
    const info = await probe(p('lossless.mp4'));
    const multi = await decodeMulti(info, { kind: 'fps', fps: 10, maxFrames: 10 }, { rgb: square, motion: square });
    const rgb = multi.rgb?.data as Uint8Array;
    const motion = multi.motion?.data as Uint8Array;
    const fb = 112 * 112 * 3;
    let diff = 0;
    let far = 0;
    let shifted = 0;
    for (let t = 1; t < 10; t++) {
      for (let i = 0; i < fb; i++) {
        const plain = Math.abs((rgb[t * fb + i] as number) - (rgb[(t - 1) * fb + i] as number));
        const got = motion[t * fb + i] as number;
        diff += Math.abs(got - plain);
        if (Math.abs(got - plain) > 2) far++;
        // against the next pair (frame t+1 − frame t): what a motion stream one frame late would give
        if (t < 9) shifted += Math.abs(got - Math.abs((rgb[(t + 1) * fb + i] as number) - (rgb[t * fb + i] as number)));
      }
    }
    const n = 9 * fb;
    expect(diff / n).toBeLessThan(0.5);
    // the first frame has no predecessor: black
    expect(max(motion.subarray(0, fb))).toBe(0);
    expect(far / n).toBeLessThan(0.01);
    // aligned: the difference one frame later fits far worse
    expect(shifted / (8 * fb)).toBeGreaterThan(4 * (diff / n));
  });

  it('a file that is not a video is a documented error', async () => {
    const info = await probe(p('wide.mp4'));
    await expect(decodeMulti({ ...info, path: p('nothing-here.mp4') }, uniform8, { rgb: square })).rejects.toMatchObject({ code: expect.stringMatching(/^FW_ERR_MEDIA_/) });
  });

  it('decodes on the first frame\'s clock behind the same guards: an MPEG-TS gives the frames decodeFrames gives; a refused container never reaches ffmpeg', async () => {
    const info = await probe(p('x.ts'));
    expect(info.startTime).toBeGreaterThan(0.5); // ffmpeg's MPEG-TS muxer starts at 1.4 s
    const single = await decodeFrames(info, uniform8, square);
    const multi = await decodeMulti(info, uniform8, { rgb: square, motion: square });
    expect(multi.rgb?.count).toBe(8);
    expect(multi.times).toEqual(single.times);
    expect(multi.times[7]).toBeLessThan(2); // seconds from the first frame, not from the file's start
    expect(Buffer.from(multi.rgb?.data as Uint8Array).equals(Buffer.from(single.data))).toBe(true);
    // a probe result naming a playlist demuxer (as a crafted file would) is refused before any decode
    await expect(decodeMulti({ ...info, container: 'hls' }, uniform8, { rgb: square })).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER' });
  });
});

const collect = async (it: AsyncIterable<MultiFrame>): Promise<MultiFrame[]> => {
  const out: MultiFrame[] = [];
  for await (const f of it) out.push(f);
  return out;
};
const join3 = (xs: Array<Uint8Array | undefined>): Buffer => Buffer.concat(xs.map((x) => Buffer.from(x as Uint8Array)));

describe('streamMulti', () => {
  it('gives, frame by frame, the frames decodeMulti gives for a clip (rgb, motion, letterbox)', async () => {
    const info = await probe(p('wide.mp4'));
    const request = { rgb: square, motion: square, letterbox: [96] };
    const whole = await decodeMulti(info, uniform8, request);
    const frames = await collect(streamMulti(info, uniform8, request));
    expect(frames).toHaveLength(8);
    expect(frames.map((f) => f.time)).toEqual(whole.times);
    expect(join3(frames.map((f) => f.rgb)).equals(Buffer.from(whole.rgb?.data as Uint8Array))).toBe(true);
    expect(join3(frames.map((f) => f.motion)).equals(Buffer.from(whole.motion?.data as Uint8Array))).toBe(true);
    expect(join3(frames.map((f) => f.letterbox?.[0])).equals(Buffer.from(whole.letterbox?.[0]?.data as Uint8Array))).toBe(true);
  });

  it('a windows pass: the rgb frames streamFrames gives, and the motion of the same source frames', async () => {
    const info = await probe(p('wide.mp4'));
    const policy = buildWindowsPolicy(16, 2, 1);
    const single: Array<{ time: number; data: Uint8Array }> = [];
    for await (const f of streamFrames(info, policy, square)) single.push(f);
    const frames = await collect(streamMulti(info, policy, { rgb: square, motion: square }));
    expect(frames.map((f) => f.time)).toEqual(single.map((f) => f.time));
    expect(frames.length).toBe(16);
    expect(join3(frames.map((f) => f.rgb)).equals(join3(single.map((f) => f.data)))).toBe(true);
    // motion alone samples the same source frames: the same differences as beside rgb
    const alone = await collect(streamMulti(info, policy, { motion: square }));
    expect(alone.map((f) => f.time)).toEqual(frames.map((f) => f.time));
    expect(join3(alone.map((f) => f.motion)).equals(join3(frames.map((f) => f.motion)))).toBe(true);
    expect(mean(frames[3]?.motion as Uint8Array)).toBeGreaterThan(0.5);
  });

  it('where the grid samples the very first frame, motion has no difference for it: black, alone or beside other outputs', async () => {
    const info = await probe(p('slow.mp4'));
    const policy = buildWindowsPolicy(16, 2, 1);
    const frames = await collect(streamMulti(info, policy, { rgb: square, motion: square, letterbox: [96] }));
    expect(frames[0]?.time).toBe(0);
    expect(frames.length).toBeGreaterThanOrEqual(17); // one frame per grid step the 6 frames/s source fills (3 s)
    expect(max(frames[0]?.motion as Uint8Array)).toBe(0);
    expect(mean(frames[1]?.motion as Uint8Array)).toBeGreaterThan(0.5);
    // motion alone: the same frames at the same times, the first black too (the first frame is paired with itself)
    const alone = await collect(streamMulti(info, policy, { motion: square }));
    expect(alone).toHaveLength(frames.length);
    expect(alone.map((f) => f.time)).toEqual(frames.map((f) => f.time));
    expect(join3(alone.map((f) => f.motion)).equals(join3(frames.map((f) => f.motion)))).toBe(true);
  });

  it('a file that does not decode is a documented error; a cancelled pass stops ffmpeg', async () => {
    const info = await probe(p('wide.mp4'));
    await expect(collect(streamMulti({ ...info, path: p('nothing-here.mp4') }, buildWindowsPolicy(16, 2, 1), { motion: square }))).rejects.toMatchObject({ code: expect.stringMatching(/^FW_ERR_MEDIA_/) });
    await expect(collect(streamMulti({ ...info, container: 'hls' }, uniform8, { rgb: square }))).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER' });
    const ctl = new AbortController();
    let n = 0;
    await expect(
      (async () => {
        for await (const _ of streamMulti(info, buildWindowsPolicy(16, 2, 1), { rgb: square, motion: square }, { signal: ctl.signal })) {
          if (++n === 2) ctl.abort(new Error('stop'));
        }
      })(),
    ).rejects.toThrow('stop');
    expect(n).toBeLessThan(16);
  });
});

/** Probe and decode with the real ffmpeg on clips generated here: shapes, counts, timing, odd inputs, bad inputs. */
import { copyFile, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrames, probe, streamFrames, DEFAULT_MEDIA_TOOLS } from '../../src/media/ffmpeg.js';
import { runFfmpeg } from '../../src/media/synthetic.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';

let dir: string;
const p = (name: string): string => join(dir, name);
const uniform16 = { kind: 'uniform' as const, frames: 16 };
const square = { size: 224, crop: 'center' as const };

beforeAll(async () => {
  dir = await makeTempDir();
  await Promise.all([
    makeTestsrc(p('3s.mp4'), { seconds: 3 }),
    makeTestsrc(p('short.mp4'), { frames: 5 }),
    makeTestsrc(p('ntsc.mp4'), { seconds: 2, fps: '30000/1001' }),
    makeTestsrc(p('slow.mp4'), { seconds: 4, fps: '7.5' }),
    makeTestsrc(p('wide.mp4'), { seconds: 1, size: '640x240' }),
    // non-square pixels: stored 320x240 shown as 640x240
    makeTestsrc(p('anamorphic.mp4'), { seconds: 1, extra: ['-vf', 'setsar=2/1'] }),
    // variable frame rate: frames at uneven times (drop some)
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-t', '3', '-vf', "select='not(between(n,20,50))'", '-fps_mode', 'vfr', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', p('vfr.mp4')]),
    runFfmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'aac', p('audio.m4a')]),
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=64x48', '-frames:v', '1', p('still.png')]),
    runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', '-c:v', 'mjpeg', '-q:v', '5', p('mjpeg.avi')]),
  ]);
  // rotation metadata: the same stream, tagged to display rotated by 90°
  await runFfmpeg(['-i', p('wide.mp4'), '-c', 'copy', '-metadata:s:v:0', 'rotate=90', p('rotated.mp4')]);
  await writeFile(p('empty.mp4'), '');
  await writeFile(p('text.mp4'), 'this is not a video\n'.repeat(50));
  const whole = await readFile(p('3s.mp4'));
  await writeFile(p('truncated.mp4'), whole.subarray(0, Math.floor(whole.length * 0.4)));
  await runFfmpeg(['-i', p('3s.mp4'), '-c', 'copy', '-movflags', '+faststart', p('3s-faststart.mp4')]);
  const fast = await readFile(p('3s-faststart.mp4'));
  await writeFile(p('truncated-faststart.mp4'), fast.subarray(0, Math.floor(fast.length * 0.4)));
  await writeFile(p('headless.mp4'), whole.subarray(Math.floor(whole.length * 0.5)));
  await copyFile(p('3s.mp4'), p('copy of 3s; $(rm -rf) .mp4'));
});
afterAll(() => removeDir(dir));

describe('probe', () => {
  it('reads size, rate, duration and frame count', async () => {
    const info = await probe(p('3s.mp4'));
    expect(info).toMatchObject({ width: 320, height: 240, fps: 25, codec: 'h264', rotation: 0, sar: 1, hasAudio: false, frameCount: 75 });
    expect(info.durationSec).toBeCloseTo(3, 1);
    const ntsc = await probe(p('ntsc.mp4'));
    expect(ntsc.fps).toBeCloseTo(29.97, 2);
  });

  it('applies rotation and pixel aspect to the displayed size', async () => {
    const rot = await probe(p('rotated.mp4'));
    expect([rot.rotation === 90 || rot.rotation === 270, rot.width, rot.height]).toEqual([true, 240, 640]);
    const ana = await probe(p('anamorphic.mp4'));
    expect([ana.sar, ana.width, ana.height]).toEqual([2, 640, 240]);
  });

  it.each([
    ['missing.mp4', 'FW_ERR_INPUT_NOT_FOUND'],
    ['empty.mp4', 'FW_ERR_INPUT_EMPTY_FILE'],
    ['text.mp4', 'FW_ERR_MEDIA_NOT_VIDEO'],
    ['audio.m4a', 'FW_ERR_MEDIA_NO_VIDEO_STREAM'],
    ['still.png', 'FW_ERR_MEDIA_NOT_VIDEO'],
    ['headless.mp4', 'FW_ERR_MEDIA_NOT_VIDEO'],
  ])('%s → %s', async (name, code) => {
    await expect(probe(p(name))).rejects.toMatchObject({ code, message: expect.stringContaining(name) });
  });

  it('refuses frames above the pixel limit before decoding', async () => {
    await expect(probe(p('3s.mp4'), { ...DEFAULT_MEDIA_TOOLS, maxPixels: 320 * 239 })).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_TOO_LARGE', message: expect.stringContaining('320x240') });
  });

  it('reads names with spaces and shell characters literally', async () => {
    expect((await probe(p('copy of 3s; $(rm -rf) .mp4'))).frameCount).toBe(75);
  });
});

describe('decode', () => {
  it('uniform: N square rgb24 frames spread over the whole clip, in order', async () => {
    const info = await probe(p('3s.mp4'));
    const b = await decodeFrames(info, uniform16, square);
    expect(b.count).toBe(16);
    expect(b.data.length).toBe(16 * 224 * 224 * 3);
    expect(b.times[0]).toBeLessThan(0.2);
    expect(b.times[15]).toBeGreaterThan(2.7);
    for (let i = 1; i < 16; i++) expect(b.times[i]).toBeGreaterThan(b.times[i - 1]!);
    // each frame lands within one frame interval of its segment centre
    b.times.forEach((t, i) => expect(Math.abs(t - (i + 0.5) * (3 / 16))).toBeLessThanOrEqual(0.04 + 1e-6));
    // frames differ (testsrc2 moves): not 16 copies of one frame
    const f0 = b.data.subarray(0, 224 * 224 * 3);
    const f15 = b.data.subarray(15 * 224 * 224 * 3);
    expect(Buffer.compare(Buffer.from(f0), Buffer.from(f15))).not.toBe(0);
  });

  it('fps: a fixed rate from the start, capped', async () => {
    const info = await probe(p('3s.mp4'));
    const b = await decodeFrames(info, { kind: 'fps', fps: 2, maxFrames: 64 }, { size: 112, crop: 'squash' });
    expect(b.count).toBe(6);
    expect(b.times).toEqual([0, 0.48, 1, 1.48, 2, 2.48]);
    expect(b.data.length).toBe(6 * 112 * 112 * 3);
    const capped = await decodeFrames(info, { kind: 'fps', fps: 5, maxFrames: 4 }, square);
    expect(capped.count).toBe(4);
  });

  it('a clip shorter than N frames gives its frames once each (the head pads and masks)', async () => {
    const b = await decodeFrames(await probe(p('short.mp4')), uniform16, square);
    expect(b.count).toBe(5);
    expect(new Set(b.times).size).toBe(5);
  });

  it('handles odd and variable frame rates, rotation and anamorphic pixels', async () => {
    for (const name of ['ntsc.mp4', 'slow.mp4', 'vfr.mp4', 'rotated.mp4', 'anamorphic.mp4', 'wide.mp4', 'mjpeg.avi']) {
      const info = await probe(p(name));
      const b = await decodeFrames(info, uniform16, square);
      // the VFR clip has a 1 s hole: targets inside it share the frame after it
      expect(b.count, name).toBeGreaterThanOrEqual(name === 'vfr.mp4' ? 11 : 16);
      expect(b.data.length, name).toBe(b.count * 224 * 224 * 3);
    }
    const vfr = await decodeFrames(await probe(p('vfr.mp4')), uniform16, square);
    expect(vfr.times[vfr.count - 1]).toBeGreaterThan(2.5);
  });

  it('a truncated file is a documented error, not half a clip', async () => {
    // index at the end (cut off): probe says corrupt
    await expect(probe(p('truncated.mp4'))).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_CORRUPT' });
    // index at the start (faststart), data cut: decode says truncated
    const info = await probe(p('truncated-faststart.mp4'));
    await expect(decodeFrames(info, uniform16, square)).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_TRUNCATED', message: expect.stringContaining('of its declared 3.00 s') });
  });

  it('streams frames one at a time with bounded memory', async () => {
    const info = await probe(p('3s.mp4'));
    let n = 0;
    for await (const f of streamFrames(info, { kind: 'fps', fps: 25, maxFrames: 1000 }, { size: 64, crop: 'center' })) {
      expect(f.data.length).toBe(64 * 64 * 3);
      expect(f.index).toBe(n++);
    }
    expect(n).toBe(75);
  });
});

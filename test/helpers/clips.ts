/** Clips for tests, generated with ffmpeg's lavfi sources into a temporary folder. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeClip, randomClipSpec, runFfmpeg, type Motion } from '../../src/media/synthetic.js';

export async function makeTempDir(prefix = 'fw-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A plain testsrc2 clip of `seconds` at `fps`, `size` WxH, H.264 in MP4 (extra ffmpeg output args allowed). */
export async function makeTestsrc(out: string, opts: { seconds?: number; fps?: string; size?: string; extra?: string[]; frames?: number } = {}): Promise<string> {
  const fps = opts.fps ?? '25';
  const args = ['-f', 'lavfi', '-i', `testsrc2=size=${opts.size ?? '320x240'}:rate=${fps}`];
  if (opts.frames !== undefined) args.push('-frames:v', String(opts.frames));
  else args.push('-t', String(opts.seconds ?? 2));
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', ...(opts.extra ?? []), out);
  await runFfmpeg(args);
  return out;
}

/** `n` motion clips per class into dir/<motion>-<k>.mp4 and a manifest.csv (relative paths). */
export async function makeMotionSet(dir: string, motions: readonly Motion[], n: number, seed: number): Promise<string> {
  const rows = ['path,label'];
  for (const [m, motion] of motions.entries()) {
    for (let k = 0; k < n; k++) {
      const name = `${motion}-${k}.mp4`;
      await makeClip(randomClipSpec(motion, seed + m * 1000 + k), join(dir, name));
      rows.push(`${name},${motion}`);
    }
  }
  const manifest = join(dir, 'manifest.csv');
  await writeFile(manifest, `${rows.join('\n')}\n`);
  return manifest;
}

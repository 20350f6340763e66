/**
 * A generated video whose content changes at known times, for the windows/segments tests: clips
 * of different motions, generated with the same size and rate, joined with ffmpeg's concat
 * demuxer and re-encoded to one H.264 stream.
 *
 * The parts are clips the bundled motion4 head labels correctly window by window on their own
 * (checked with `label --windows 2,1` when they were chosen, on their own and joined; the head
 * was trained on whole 1.6–3.2 s clips and is often wrong on single 2 s windows, so arbitrary
 * seeds would test the head, not the segmentation). Chosen again when the bundled head changes.
 */
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { makeClip, randomClipSpec, runFfmpeg, type Motion } from '../../src/media/synthetic.js';

export interface Part {
  motion: Motion;
  seed: number;
}

/** 4 s zoom_in + 4 s pan_left + 4 s zoom_out: true boundaries at 4 s and 8 s. */
export const CHANGING_PARTS: readonly Part[] = [
  { motion: 'zoom_in', seed: 700 },
  { motion: 'pan_left', seed: 2962 },
  { motion: 'zoom_out', seed: 4972 },
];

/** Generate the parts (each `seconds` long, 320×240 at 25 fps) and join them into `out`; returns the true boundaries. */
export async function makeChangingVideo(out: string, parts: readonly Part[] = CHANGING_PARTS, seconds = 4): Promise<{ boundaries: number[]; labels: Motion[]; durationSec: number }> {
  const dir = dirname(resolve(out));
  const files = await Promise.all(
    parts.map(async (p, i) => {
      const file = join(dir, `part-${i}-${p.motion}.mp4`);
      await makeClip({ ...randomClipSpec(p.motion, p.seed), seconds, fps: 25, width: 320, height: 240 }, file);
      return file;
    }),
  );
  const list = join(dir, `concat-${Date.now()}.txt`);
  await writeFile(list, files.map((f) => `file '${f.replace(/'/g, "'\\''")}'`).join('\n'));
  await runFfmpeg(['-f', 'concat', '-safe', '0', '-i', list, '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '26', '-pix_fmt', 'yuv420p', '-r', '25', '-movflags', '+faststart', resolve(out)]);
  await rm(list, { force: true });
  return { boundaries: parts.slice(1).map((_, i) => (i + 1) * seconds), labels: parts.map((p) => p.motion), durationSec: parts.length * seconds };
}

/**
 * Paired clips where only the direction of time decides the class (generated with ffmpeg):
 * - camera motions over the same scene (zoom in vs out, pan left vs right), from src/media/synthetic.ts;
 * - a textured shape moving left vs right across a still background (the same shape, background
 *   and speed in both clips of a pair: one clip is the other played backwards).
 * Each clip k of one class has a twin k in the other class whose frames are the same, in the
 * reverse order, so an order-blind model (mean pooling) cannot do better than chance.
 *
 * Exact twins: `uniform:16` keeps, for each segment centre, the frame nearest to it, so in a clip
 * of N frames the picks i_k and i_(15−k) add up to N (not N−1). A plain reversal (frame j shows
 * frame N−1−j) would then give the twin a sampled set one frame off — a small, systematic cue
 * an order-blind classifier can learn. So the reversed twin shows frame N−j at frame j: its
 * sampled frames are exactly the forward clip's sampled frames, reversed.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildClipFilter, randomClipSpec, runFfmpeg, type ClipSpec, type Motion } from '../../src/media/synthetic.js';
import { createRng } from '../../src/ml/split.js';

/** Textured scenes (testsrc2, cellauto, sierpinski, testsrc): zooms and pans are visible in every frame. */
export const TEXTURED_SCENES = [0, 2, 4, 9];

export type ShapeDirection = 'moving_left' | 'moving_right';

/** A shape (a small testsrc2 or mandelbrot patch, random hue) crossing a flat background of random colour. */
export async function makeShapeClip(direction: ShapeDirection, seed: number, out: string, seconds = 1.8, fps = 25): Promise<void> {
  const rng = createRng(seed);
  const hex = (): string => Math.floor(40 + rng() * 160).toString(16).padStart(2, '0');
  const bg = `0x${hex()}${hex()}${hex()}`;
  const size = 56 + Math.floor(rng() * 40);
  const source = rng() < 0.5 ? `testsrc2=s=${size}x${size}:r=${fps}` : `mandelbrot=s=${size}x${size}:r=${fps}`;
  const hue = Math.round(rng() * 360);
  const y = Math.round(20 + rng() * (240 - size - 40));
  const frames = Math.round(seconds * fps);
  const p = `(n/${frames - 1})`;
  // moving_left at frame n shows moving_right's frame N−n (see the note at the top)
  const x = direction === 'moving_right' ? `8+(W-w-16)*${p}` : `8+(W-w-16)*((${frames}-n)/${frames - 1})`;
  // the patch itself is frozen (first frame) so only its position changes over time
  const graph = `color=c=${bg}:s=320x240:r=${fps}[bg];${source},trim=end_frame=1,loop=loop=-1:size=1,setpts=N/${fps}/TB,hue=h=${hue}[fg];[bg][fg]overlay=x='${x}':y=${y}:eval=frame:shortest=1,format=yuv420p`;
  await runFfmpeg(['-f', 'lavfi', '-i', graph, '-frames:v', String(frames), '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '24', '-pix_fmt', 'yuv420p', out]);
}

/**
 * A camera-motion clip; `reversedTwinOf` (zoom_out of a zoom_in spec, pan_left of a pan_right
 * spec) makes the exact reversed twin instead: frame j shows the forward clip's frame N−j.
 */
async function makeMotionClip(spec: ClipSpec, out: string, reversedTwin: boolean): Promise<void> {
  const frames = Math.max(2, Math.round(spec.seconds * spec.fps));
  let filter = buildClipFilter(spec);
  if (reversedTwin) {
    const forward = `(on/${frames - 1})`;
    if (!filter.includes(forward)) throw new Error(`unexpected clip filter: ${filter}`);
    filter = filter.split(forward).join(`((${frames}-on)/${frames - 1})`);
  }
  await runFfmpeg(['-f', 'lavfi', '-i', filter, '-frames:v', String(frames), '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '26', '-pix_fmt', 'yuv420p', out]);
}

/** `n` twin pairs (zoom in/out or pan right/left of the same scene, rate and length) and a manifest. */
export async function makeMotionPairs(dir: string, kind: 'zoom' | 'pan', n: number, seed: number, seconds = 1.8): Promise<string> {
  const [forward, backward]: [Motion, Motion] = kind === 'zoom' ? ['zoom_in', 'zoom_out'] : ['pan_right', 'pan_left'];
  const rows = ['path,label'];
  for (const motion of [forward, backward]) {
    for (let k = 0; k < n; k++) {
      const name = `${motion}-${k}.mp4`;
      const spec = { ...randomClipSpec(forward, seed + k), scene: TEXTURED_SCENES[k % TEXTURED_SCENES.length] as number, strength: 1, seconds };
      await makeMotionClip(spec, join(dir, name), motion === backward);
      rows.push(`${name},${motion}`);
    }
  }
  const manifest = join(dir, 'manifest.csv');
  await writeFile(manifest, `${rows.join('\n')}\n`);
  return manifest;
}

/** `n` twin pairs of moving-shape clips and a manifest. */
export async function makeShapePairs(dir: string, n: number, seed: number, seconds = 1.8): Promise<string> {
  const rows = ['path,label'];
  for (const direction of ['moving_left', 'moving_right'] as const) {
    for (let k = 0; k < n; k++) {
      const name = `${direction}-${k}.mp4`;
      await makeShapeClip(direction, seed + k, join(dir, name), seconds);
      rows.push(`${name},${direction}`);
    }
  }
  const manifest = join(dir, 'manifest.csv');
  await writeFile(manifest, `${rows.join('\n')}\n`);
  return manifest;
}

/**
 * Paired clips where only the direction of time decides the class (generated with ffmpeg):
 * - camera motions over the same scene (zoom in vs out, pan left vs right), from src/media/synthetic.ts;
 * - a textured shape moving left vs right across a still background.
 * Each clip k of one class has a twin k in the other class whose frames are the same, in the
 * reverse order, so an order-blind model (mean pooling) cannot do better than chance.
 *
 * Exact twins: both clips come from one generated stream S of N+1 frames. The forward clip is
 * S[0..N-1]; the twin is S[1..N] played backwards, so its frame j is S[N-j]. `uniform:16` keeps,
 * for each segment centre, the frame nearest to it, so in a clip of N frames the picks i_k and
 * i_(15-k) add up to N: the twin's sampled frames are exactly the forward clip's, reversed. (A
 * plain reversal, frame j = S[N-1-j], would give the twin a sampled set one frame off: a small,
 * systematic cue an order-blind classifier can learn.) Reversing the stream itself also reverses
 * anything the scene does on its own (testsrc2's moving parts, cellauto's growth), not only the
 * camera. Lossless H.264 on one thread: a decoded frame depends only on the picture, not on its
 * place in the GOP nor on the encoder's thread count.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildClipFilter, randomClipSpec, runFfmpeg, type Motion } from '../../src/media/synthetic.js';
import { createRng } from '../../src/ml/split.js';

/** Textured scenes (testsrc2, cellauto, sierpinski, testsrc): zooms and pans are visible in every frame. */
export const TEXTURED_SCENES = [0, 2, 4, 9];

const EXACT_ENCODING = ['-c:v', 'libx264', '-preset', 'veryfast', '-qp', '0', '-threads', '1', '-pix_fmt', 'yuv420p'];

/**
 * Encode `frames` frames of a lavfi graph (one output, any frame numbering), forwards (S[0..N-1])
 * or as the reversed twin (S[N..1]).
 */
async function encodeTwin(graph: string, frames: number, fps: number, reversed: boolean, out: string): Promise<void> {
  const chain = reversed ? `${graph},trim=start_frame=1:end_frame=${frames + 1},reverse,setpts=N/(${fps}*TB)` : `${graph},trim=end_frame=${frames},setpts=N/(${fps}*TB)`;
  await runFfmpeg(['-f', 'lavfi', '-i', chain, '-frames:v', String(frames), ...EXACT_ENCODING, out]);
}

export type ShapeDirection = 'moving_left' | 'moving_right';

/** A shape (a small testsrc2 or mandelbrot patch, random hue) crossing a flat background of random colour; moving_left is moving_right's reversed twin. */
export async function makeShapeClip(direction: ShapeDirection, seed: number, out: string, seconds = 1.8, fps = 25): Promise<void> {
  const rng = createRng(seed);
  const hex = (): string => Math.floor(40 + rng() * 160).toString(16).padStart(2, '0');
  const bg = `0x${hex()}${hex()}${hex()}`;
  const size = 56 + Math.floor(rng() * 40);
  const source = rng() < 0.5 ? `testsrc2=s=${size}x${size}:r=${fps}` : `mandelbrot=s=${size}x${size}:r=${fps}`;
  const hue = Math.round(rng() * 360);
  const y = Math.round(20 + rng() * (240 - size - 40));
  const frames = Math.round(seconds * fps);
  // the patch itself is frozen (first frame) so only its position changes over time
  const graph = `color=c=${bg}:s=320x240:r=${fps}[bg];${source},trim=end_frame=1,loop=loop=-1:size=1,setpts=N/${fps}/TB,hue=h=${hue}[fg];[bg][fg]overlay=x='8+(W-w-16)*(n/${frames})':y=${y}:eval=frame:shortest=1,format=yuv420p`;
  await encodeTwin(graph, frames, fps, direction === 'moving_left', out);
}

/** `n` twin pairs (zoom in/out or pan right/left of the same scene, rate and length) and a manifest. */
export async function makeMotionPairs(dir: string, kind: 'zoom' | 'pan', n: number, seed: number, seconds = 1.8): Promise<string> {
  const [forward, backward]: [Motion, Motion] = kind === 'zoom' ? ['zoom_in', 'zoom_out'] : ['pan_right', 'pan_left'];
  const rows = ['path,label'];
  for (const motion of [forward, backward]) {
    for (let k = 0; k < n; k++) {
      const name = `${motion}-${k}.mp4`;
      const spec = { ...randomClipSpec(forward, seed + k), scene: TEXTURED_SCENES[k % TEXTURED_SCENES.length] as number, strength: 1, seconds };
      // one extra frame: the reversed twin is S[N..1] (see the note at the top)
      const frames = Math.max(2, Math.round(spec.seconds * spec.fps));
      await encodeTwin(buildClipFilter({ ...spec, seconds: (frames + 1) / spec.fps }), frames, spec.fps, motion === backward, join(dir, name));
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

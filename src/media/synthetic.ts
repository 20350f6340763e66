/**
 * Synthetic clips made with ffmpeg's lavfi sources: camera motions (zoom in/out, pan left/right)
 * over varied generated scenes. Deterministic for a given seed. Used to build the bundled sample
 * clips and model, by tests (small, committed as code rather than data) and by the benchmark.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createRng } from '../ml/split.js';

export const MOTIONS = ['zoom_in', 'zoom_out', 'pan_left', 'pan_right'] as const;
export type Motion = (typeof MOTIONS)[number];

/** Scenes: each a lavfi source at 640×480 (textured enough for a CNN to see motion). */
const SCENES = [
  (r: number) => `testsrc2=size=640x480:rate=${r}`,
  (r: number) => `mandelbrot=size=640x480:rate=${r}`,
  (r: number) => `cellauto=size=640x480:rate=${r}:rule=110:random_seed=7`,
  (r: number) => `life=size=640x480:rate=${r}:mold=10:ratio=0.3:random_seed=3:death_color=#402020:life_color=#e0c040`,
  (r: number) => `sierpinski=size=640x480:rate=${r}:type=carpet:seed=5`,
  (r: number) => `gradients=size=640x480:rate=${r}:nb_colors=5:seed=11:speed=0.02`,
  (r: number) => `smptehdbars=size=640x480:rate=${r}`,
  (r: number) => `colorchart=rate=${r}:patch_size=64x64,scale=640:480`,
  (r: number) => `rgbtestsrc=size=640x480:rate=${r}`,
  (r: number) => `testsrc=size=640x480:rate=${r}`,
] as const;

export interface ClipSpec {
  motion: Motion;
  /** Index into the scene list (wraps). */
  scene: number;
  seconds: number;
  fps: number;
  width: number;
  height: number;
  /** Hue rotation in degrees, for variety. */
  hue: number;
  /** Motion strength in (0, 1]: how far the camera zooms or pans. */
  strength: number;
  /** The scene frozen on its first frame: only the camera moves (a zoom in is then exactly a zoom out reversed). */
  still?: boolean;
}

/** A varied, reproducible clip spec for `motion`. */
export function randomClipSpec(motion: Motion, seed: number): ClipSpec {
  const rng = createRng(seed);
  return {
    motion,
    scene: Math.floor(rng() * SCENES.length),
    seconds: 1.6 + rng() * 1.6,
    fps: [15, 24, 25, 30][Math.floor(rng() * 4)] as number,
    width: 320,
    height: 240,
    hue: Math.round(rng() * 360),
    strength: 0.5 + rng() * 0.5,
  };
}

/** The lavfi filter graph for a clip spec. */
export function buildClipFilter(spec: ClipSpec): string {
  const frames = Math.max(2, Math.round(spec.seconds * spec.fps));
  const source = (SCENES[spec.scene % SCENES.length] as (r: number) => string)(spec.fps);
  const scene = spec.still ? `${source},trim=end_frame=1,loop=loop=-1:size=1:start=0` : source;
  const s = spec.strength.toFixed(3);
  const p = `(on/${frames - 1})`; // progress 0 → 1 over the clip
  const zoomMax = `(1+${s})`;
  let z: string;
  let x: string;
  switch (spec.motion) {
    case 'zoom_in':
      z = `1+${s}*${p}`;
      x = 'iw/2-(iw/zoom/2)';
      break;
    case 'zoom_out':
      z = `${zoomMax}-${s}*${p}`;
      x = 'iw/2-(iw/zoom/2)';
      break;
    case 'pan_left': // camera moves left: the view window slides from right to left
      z = zoomMax;
      x = `(iw-iw/zoom)*(1-${p})`;
      break;
    case 'pan_right':
      z = zoomMax;
      x = `(iw-iw/zoom)*${p}`;
      break;
  }
  return `${scene},hue=h=${spec.hue},zoompan=z='${z}':x='${x}':y='ih/2-(ih/zoom/2)':d=1:s=${spec.width}x${spec.height}:fps=${spec.fps},format=yuv420p`;
}

function run(bin: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', rej);
    child.on('close', (code) => (code === 0 ? res() : rej(new Error(`${bin} exited ${code}: ${err.slice(-500)}`))));
  });
}

/** Write an H.264 MP4 of the clip spec to `out`. */
export async function makeClip(spec: ClipSpec, out: string, ffmpegPath = 'ffmpeg'): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const frames = Math.max(2, Math.round(spec.seconds * spec.fps));
  await run(ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', buildClipFilter(spec), '-frames:v', String(frames), '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '26', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', out]);
}

/** Run an arbitrary ffmpeg argument list (tests use it for odd inputs). */
export function runFfmpeg(args: string[], ffmpegPath = 'ffmpeg'): Promise<void> {
  return run(ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
}

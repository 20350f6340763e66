/**
 * Letterboxed square frames for the keypoint-stream tests and the bench: ffmpeg scales the
 * picture into S×S keeping its aspect, centres it on black bars
 * (`scale=S:S:force_original_aspect_ratio=decrease,format=rgb24,pad=S:S:(ow-iw)/2:(oh-ih)/2`;
 * rgb24 before pad so the offsets are not rounded to chroma pairs), and `content` says where
 * the picture lies, computed the way ffmpeg's scale filter rounds.
 */
import { spawn } from 'node:child_process';
import type { LetterboxedFrames } from '../../src/ml/streams/frame-stream.js';

function run(cmd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${cmd} exit ${code}: ${err}`))));
  });
}

/** Where a W×H picture lies in the S×S letterbox (ffmpeg rounds the scaled side to nearest, pads centred, floored). */
export function letterboxContent(width: number, height: number, size: number): LetterboxedFrames['content'] {
  const ow = width >= height ? size : Math.round((size * width) / height);
  const oh = width >= height ? Math.round((size * height) / width) : size;
  const x = Math.floor((size - ow) / 2);
  const y = Math.floor((size - oh) / 2);
  return { x0: x / size, y0: y / size, w: ow / size, h: oh / size };
}

/** The first `count` frames at `fps` of a video, letterboxed to `size`². */
export async function decodeLetterboxed(path: string, size: number, count: number, fps = 8): Promise<LetterboxedFrames> {
  const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'json', path])).toString()) as {
    streams: Array<{ width: number; height: number }>;
  };
  const { width, height } = probe.streams[0] ?? { width: 0, height: 0 };
  const vf = `fps=${fps},scale=${size}:${size}:force_original_aspect_ratio=decrease,format=rgb24,pad=${size}:${size}:(ow-iw)/2:(oh-ih)/2`;
  const raw = await run('ffmpeg', ['-v', 'error', '-i', path, '-vf', vf, '-frames:v', String(count), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']);
  const frame = size * size * 3;
  const n = Math.floor(raw.length / frame);
  return { data: new Uint8Array(raw.buffer, raw.byteOffset, n * frame), count: n, size, content: letterboxContent(width, height, size) };
}

/** `count` black frames of `size`² (content: the whole square). */
export function blackFrames(size: number, count: number): LetterboxedFrames {
  return { data: new Uint8Array(count * size * size * 3), count, size, content: { x0: 0, y0: 0, w: 1, h: 1 } };
}

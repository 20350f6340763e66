/**
 * Media hardening (issue 9), with the real ffmpeg on files made here:
 * - videos whose timestamps do not start at 0 (MPEG-TS, `-output_ts_offset`, edit lists, a file
 *   that starts below 0) are sampled on the decoder's clock: the same frames at the same times as
 *   the file they were remuxed from, through `decodeFrames`, `streamFrames` (fps, windows) and the
 *   CLI (`label`, `label --windows`);
 * - playlists, manifests, lists, image sequences and session descriptions are refused with
 *   FW_ERR_MEDIA_UNSUPPORTED_CONTAINER by probe and decode alike, before any file they name is
 *   opened (the named files are decodable clips, and their access times are watched), also
 *   through the HTTP upload and path routes (and the queue workers label an uploaded MPEG-TS);
 * - a header that declares 1 h over 2 s of data is FW_ERR_MEDIA_TRUNCATED, not CORRUPT.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValidResult } from '../../src/jobs/result-schema.js';
import { decodeFrames, probe, streamFrames, type VideoInfo } from '../../src/media/ffmpeg.js';
import { buildWindowsPolicy, type DecodePolicy } from '../../src/media/sampling.js';
import { makeClip, randomClipSpec, runFfmpeg } from '../../src/media/synthetic.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { parseSse } from '../helpers/sse.js';
import { resultLines, runCliInProcess } from '../helpers/cli-run.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';
import { freshCacheDir, TEST_ENGINE } from '../helpers/queue-fixtures.js';

let dir: string;
let cacheDir: string;
const p = (...names: string[]): string => join(dir, ...names);
const small = { size: 64, crop: 'center' as const };
const uniform16 = { kind: 'uniform' as const, frames: 16 };

/** ffprobe's own view of a file (to show what a fixture is), without framewise's guards. */
function ffprobeJson(path: string): Promise<{ format: { start_time?: string }; streams: Array<{ codec_type: string; start_time?: string }> }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', path], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(JSON.parse(out)));
  });
}

/** Run the CLI in this process (JSON Lines); every line is checked against the result schema. */
async function cli(args: string[]): Promise<{ code: number; results: Array<Record<string, unknown>>; stderr: string }> {
  const r = await runCliInProcess(args, ['--cache-dir', cacheDir, '--engine', TEST_ENGINE]);
  return { code: r.code, results: resultLines(r.stdout), stderr: r.stderr };
}

async function collect(info: VideoInfo, policy: DecodePolicy): Promise<{ times: number[]; data: Buffer }> {
  const times: number[] = [];
  const chunks: Uint8Array[] = [];
  for await (const f of streamFrames(info, policy, small)) {
    times.push(f.time);
    chunks.push(f.data);
  }
  return { times, data: Buffer.concat(chunks) };
}

beforeAll(async () => {
  dir = await makeTempDir('fw-media-hardening-');
  cacheDir = await freshCacheDir(dir);
  await mkdir(p('outside'));
  await mkdir(p('allowed'));
});
afterAll(() => removeDir(dir));

/** Files that only an attack would read: their access times must not move. */
let watched: string[];
const OLD = new Date('2001-01-01T00:00:00Z');
const resetAtimes = async (): Promise<void> => {
  for (const f of watched) await utimes(f, OLD, (await stat(f)).mtime);
};
const touched = async (): Promise<string[]> => {
  const out: string[] = [];
  for (const f of watched) if ((await stat(f)).atimeMs !== OLD.getTime()) out.push(f);
  return out;
};
let atimeWorks = false;

describe('timestamps that do not start at 0 (issue 9 item 1)', () => {
  // the same H.264 stream (B-frames, so an edit list) in containers whose clocks start elsewhere
  const variants = [
    { name: 'remuxed.ts', what: 'MPEG-TS (starts at 1.4 s)', minStart: 1 },
    { name: 'offset.mp4', what: 'MP4 with -output_ts_offset 10', minStart: 9.9 },
    { name: 'offset.mkv', what: 'Matroska with -output_ts_offset 10 and audio (no stream duration)', minStart: 9.9 },
    { name: 'primed.mkv', what: 'Matroska with Opus audio: the file starts below 0', minStart: 0 },
  ];

  beforeAll(async () => {
    await makeClip({ ...randomClipSpec('zoom_in', 9101), seconds: 4, fps: 25 }, p('ref.mp4'));
    const sine = ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=4'];
    await Promise.all([
      runFfmpeg(['-i', p('ref.mp4'), '-c', 'copy', p('remuxed.ts')]),
      runFfmpeg(['-i', p('ref.mp4'), '-c', 'copy', '-output_ts_offset', '10', p('offset.mp4')]),
      runFfmpeg(['-i', p('ref.mp4'), ...sine, '-map', '0:v', '-map', '1:a', '-c:v', 'copy', '-c:a', 'aac', '-output_ts_offset', '10', p('offset.mkv')]),
      runFfmpeg(['-i', p('ref.mp4'), ...sine, '-map', '0:v', '-map', '1:a', '-c:v', 'copy', '-c:a', 'libopus', '-shortest', p('primed.mkv')]),
      // the file: ffmpeg's default MPEG-TS (MPEG-2 video)
      runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25:duration=2', '-c:v', 'mpeg2video', p('x.ts')]),
      // an edit list that starts inside a GOP (frames before it are decoded, then dropped)
      runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25:duration=6', '-c:v', 'libx264', '-preset', 'veryfast', '-bf', '3', '-g', '50', '-pix_fmt', 'yuv420p', p('gop50.mp4')]),
    ]);
    await runFfmpeg(['-ss', '1.3', '-i', p('gop50.mp4'), '-c', 'copy', p('editlist.mp4')]);
  });

  it('the fixtures start where they claim: far from 0, or below 0', async () => {
    for (const v of variants) {
      const info = await probe(p(v.name));
      expect(info.startTime, v.what).toBeGreaterThanOrEqual(v.minStart);
    }
    const primed = await ffprobeJson(p('primed.mkv'));
    expect(Number(primed.format.start_time)).toBeLessThan(0);
  });

  it.each(variants)('$what: uniform, fps and windows give the frames and times of the file it was remuxed from', async (v) => {
    const ref = await probe(p('ref.mp4'));
    const info = await probe(p(v.name));
    expect(info.durationSec).toBeCloseTo(ref.durationSec, 2);
    for (const policy of [uniform16, { kind: 'fps' as const, fps: 5, maxFrames: 100 }, buildWindowsPolicy(16, 2, 1)] as DecodePolicy[]) {
      const want = await collect(ref, policy);
      const got = await collect(info, policy);
      expect(got.times.length, `${policy.kind} frames`).toBe(want.times.length);
      got.times.forEach((t, i) => expect(t, `${policy.kind} frame ${i}`).toBeCloseTo(want.times[i] as number, 3));
      expect(got.data.equals(want.data), `${policy.kind}: the same pixels`).toBe(true);
    }
    const batch = await decodeFrames(info, uniform16, small);
    expect(batch.count).toBe(16);
    expect(batch.times[15]).toBeGreaterThan(3.5);
  });

  it("ffmpeg's default MPEG-TS (the issue's x.ts) decodes whole: 16 frames spread over its 2 s", async () => {
    const info = await probe(p('x.ts'));
    expect(info.startTime).toBeGreaterThan(1);
    const batch = await decodeFrames(info, uniform16, small);
    expect(batch.count).toBe(16);
    batch.times.forEach((t, i) => expect(Math.abs(t - ((i + 0.5) * info.durationSec) / 16), `frame ${i} at ${t} s`).toBeLessThanOrEqual(0.04 + 1e-6));
  });

  it('an edit list that starts inside a GOP: the frames of the edited timeline, spread to its end', async () => {
    const info = await probe(p('editlist.mp4'));
    expect(info.durationSec).toBeGreaterThan(4.5);
    expect(info.durationSec).toBeLessThan(5);
    const batch = await decodeFrames(info, uniform16, small);
    expect(batch.count).toBe(16);
    batch.times.forEach((t, i) => expect(Math.abs(t - ((i + 0.5) * info.durationSec) / 16), `frame ${i} at ${t} s`).toBeLessThanOrEqual(0.04 + 1e-6));
  });

  it('label and label --windows: the remuxes get the labels and windows of the original; the issue x.ts labels', async () => {
    const files = ['ref.mp4', 'remuxed.ts', 'offset.mp4', 'offset.mkv', 'x.ts'].map((n) => p(n));
    const plain = await cli(['label', ...files]);
    expect(plain.results.map((r) => [r.ok, (r.error as { code?: string } | undefined)?.code])).toEqual(files.map(() => [true, undefined]));
    expect(plain.code).toBe(0);
    const [ref, ...rest] = plain.results;
    for (const r of rest.slice(0, 3)) {
      expect(r.label).toBe(ref?.label);
      const scores = (x: Record<string, unknown> | undefined): unknown => (x?.topK as Array<{ label: string; p: number }>).map((t) => [t.label, t.p.toFixed(4)]);
      expect(scores(r)).toEqual(scores(ref));
    }

    const windowed = await cli(['label', ...files.slice(0, 4), '--windows', '2,1']);
    expect(windowed.code).toBe(0);
    const spans = (r: Record<string, unknown> | undefined): unknown => (r?.windows as Array<{ start: number; end: number; frames: number }> | undefined)?.map((w) => [w.start, w.end, w.frames]);
    const [wref, ...wrest] = windowed.results;
    expect(spans(wref)).toEqual([
      [0, 2, 16],
      [1, 3, 16],
      [2, 4, 16],
    ]);
    for (const r of wrest) {
      expect(r.ok).toBe(true);
      expect(spans(r)).toEqual(spans(wref));
      expect((r.segments as Array<{ label: string }>).map((s) => s.label)).toEqual((wref?.segments as Array<{ label: string }>).map((s) => s.label));
    }
  });
});

describe('files that refer to other files (issue 9 item 2)', () => {
  const attacks = [
    { name: 'hls-innocent.mp4', what: 'an HLS playlist (named .mp4) whose segments lie outside', container: 'hls' },
    { name: 'playlist.m3u8', what: 'the same HLS playlist as .m3u8', container: 'hls' },
    { name: 'innocent.mp4', what: 'a DASH MPD renamed innocent.mp4, <BaseURL> outside', container: 'dash' },
    { name: 'list.mp4', what: 'a concat list naming a sibling file', container: 'concat' },
    { name: 'img%03d.png', what: 'an image2 pattern (img001.png … exist)', container: 'image2' },
    { name: 'stream.mp4', what: 'an SDP session description (RTP over UDP)', container: 'sdp' },
  ];

  beforeAll(async () => {
    const outside = p('outside');
    const allowed = p('allowed');
    await makeTestsrc(join(outside, 'secret.mp4'), { seconds: 2, size: '160x120' });
    // HLS: segments written outside, the playlist naming them by absolute path
    await runFfmpeg(['-i', join(outside, 'secret.mp4'), '-c', 'copy', '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_segment_filename', join(outside, 'seg%d.ts'), join(outside, 'list.m3u8')]);
    const m3u8 = (await readFile(join(outside, 'list.m3u8'), 'utf8')).replace(/^seg/gm, join(outside, 'seg'));
    await writeFile(join(allowed, 'playlist.m3u8'), m3u8);
    await writeFile(join(allowed, 'hls-innocent.mp4'), m3u8);
    // DASH: the MPD moved in, pointing back out with <BaseURL>
    await runFfmpeg(['-i', join(outside, 'secret.mp4'), '-c', 'copy', '-f', 'dash', join(outside, 'manifest.mpd')]);
    const mpd = (await readFile(join(outside, 'manifest.mpd'), 'utf8')).replace('<Period', `<BaseURL>file:${outside}/</BaseURL>\n\t<Period`);
    await writeFile(join(allowed, 'innocent.mp4'), mpd);
    // concat: a list naming a sibling clip
    await copyFile(join(outside, 'secret.mp4'), join(allowed, 'sibling.mp4'));
    await writeFile(join(allowed, 'list.mp4'), 'ffconcat version 1.0\nfile sibling.mp4\n');
    // image2: a file literally named with the pattern, and the sequence it expands to
    await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=64x48', '-frames:v', '1', '-update', '1', join(dir, 'frame.png')]);
    for (const name of ['img%03d.png', 'img001.png', 'img002.png', 'img003.png']) await copyFile(join(dir, 'frame.png'), join(allowed, name));
    await writeFile(join(allowed, 'stream.mp4'), 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n');
    const outsideFiles = (await readdir(outside)).filter((n) => !n.endsWith('.m3u8') && !n.endsWith('.mpd')).map((n) => join(outside, n));
    watched = [...outsideFiles, join(allowed, 'sibling.mp4'), ...[1, 2, 3].map((i) => join(allowed, `img00${i}.png`))];
    expect(outsideFiles.filter((f) => f.includes('seg')).length).toBeGreaterThan(0);
    expect(outsideFiles.filter((f) => f.endsWith('.m4s')).length).toBeGreaterThan(0);

    // the attack is real, and this file system shows it: an unguarded ffprobe reads the segments
    await resetAtimes();
    const unguarded = await ffprobeJson(join(allowed, 'hls-innocent.mp4'));
    expect(unguarded.streams.some((s) => s.codec_type === 'video')).toBe(true);
    atimeWorks = (await touched()).some((f) => f.includes('seg'));
    await resetAtimes();
  });

  it.each(attacks)('probe refuses $what with FW_ERR_MEDIA_UNSUPPORTED_CONTAINER, opening nothing it names', async (a) => {
    await expect(probe(p('allowed', a.name))).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER', details: { container: a.container } });
    if (atimeWorks) expect(await touched()).toEqual([]);
  });

  it('a single image is still FW_ERR_MEDIA_NOT_VIDEO (one file, no pattern)', async () => {
    await expect(probe(p('allowed', 'img001.png'))).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_NOT_VIDEO' });
    await resetAtimes();
  });

  it('decode refuses them too: a VideoInfo of another container never reaches ffmpeg; a file swapped after the probe is read only as the probed container', async () => {
    const good = await probe(join(p('outside'), 'secret.mp4'));
    await resetAtimes();
    const noFfmpeg = { ffmpegPath: join(dir, 'no-such-ffmpeg'), ffprobePath: 'ffprobe', maxPixels: 1e8, decodeTimeoutMs: 60_000 };
    for (const container of ['hls', 'dash', 'concat', 'image2', 'sdp']) {
      const forged: VideoInfo = { ...good, path: p('allowed', 'innocent.mp4'), container };
      await expect(decodeFrames(forged, uniform16, small, { tools: noFfmpeg })).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER' });
    }
    // probed as MP4, then replaced by a manifest, a playlist, a list: ffmpeg is pinned to the MP4 demuxer
    for (const name of ['innocent.mp4', 'hls-innocent.mp4', 'list.mp4']) {
      const swapped: VideoInfo = { ...good, path: p('allowed', name) };
      await expect(decodeFrames(swapped, uniform16, small)).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_CORRUPT' });
    }
    if (atimeWorks) expect(await touched()).toEqual([]);
  });

  it('label refuses each with the code: a failed line, never the outside clip’s label', async () => {
    const r = await cli(['label', ...attacks.map((a) => p('allowed', a.name))]);
    expect(r.results.map((x) => [x.ok, (x.error as { code?: string } | undefined)?.code])).toEqual(attacks.map(() => [false, 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER']));
    if (atimeWorks) expect(await touched()).toEqual([]);
  });
});

describe('a header that declares more than the file holds (issue 9 item 6)', () => {
  beforeAll(async () => {
    // 1 h of a 2 s clip (copied, not encoded), moov first; then only the first 2 s of its data kept
    await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=10:duration=2', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-pix_fmt', 'yuv420p', p('unit.mp4')]);
    await runFfmpeg(['-stream_loop', '1799', '-i', p('unit.mp4'), '-c', 'copy', '-movflags', '+faststart', p('hour.mp4')]);
    const whole = await readFile(p('hour.mp4'));
    let at = 0;
    let mdat = -1;
    while (at + 8 <= whole.length) {
      const size = whole.readUInt32BE(at);
      if (whole.toString('latin1', at + 4, at + 8) === 'mdat') {
        mdat = at + 8;
        break;
      }
      at += size;
    }
    expect(mdat).toBeGreaterThan(0);
    const keep = mdat + Math.floor(((whole.length - mdat) * 2) / 3600);
    await writeFile(p('hour-holds-2s.mp4'), whole.subarray(0, keep));
    // the same header over data that decodes to nothing
    const zeroed = Buffer.from(whole.subarray(0, keep));
    zeroed.fill(0, mdat);
    await writeFile(p('hour-holds-zeros.mp4'), zeroed);
  });

  it('declares 1 h, holds 2 s: FW_ERR_MEDIA_TRUNCATED (uniform decode and label); zeros where the data was: still FW_ERR_MEDIA_CORRUPT', async () => {
    const info = await probe(p('hour-holds-2s.mp4'));
    expect(info.durationSec).toBeCloseTo(3600, 0);
    await expect(decodeFrames(info, uniform16, small)).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_TRUNCATED', message: expect.stringContaining('3600.00 s') });
    const zeros = await probe(p('hour-holds-zeros.mp4'));
    await expect(decodeFrames(zeros, uniform16, small)).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_CORRUPT' });
    const r = await cli(['label', p('hour-holds-2s.mp4'), p('hour-holds-zeros.mp4')]);
    expect(r.results.map((x) => (x.error as { code?: string } | undefined)?.code)).toEqual(['FW_ERR_MEDIA_TRUNCATED', 'FW_ERR_MEDIA_CORRUPT']);
  });
});

describe('through the HTTP API and the queue workers (issue 9 items 1 and 2)', () => {
  let api: ApiHarness;
  beforeAll(async () => {
    api = await startApiHarness({
      name: 'mediahard',
      workers: ['decode', 'embed', 'classify'],
      prepare: async (roots) => {
        await copyFile(p('allowed', 'playlist.m3u8'), join(roots, 'playlist.m3u8'));
      },
    });
  });
  afterAll(() => api?.close());

  it('an uploaded DASH MPD named innocent.mp4 → 422 FW_ERR_MEDIA_UNSUPPORTED_CONTAINER, nothing kept; a playlist path under the roots → the same', async () => {
    await resetAtimes();
    const boundary = 'fwboundaryMPD';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="innocent.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
      await readFile(p('allowed', 'innocent.mp4')),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const up = await api.app.inject({ method: 'POST', url: '/v1/clips', payload: body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    expect(up.statusCode).toBe(422);
    expect(up.json()).toMatchObject({ error: { code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER' } });
    const uploads = await readdir(join(api.config.queue.dataDir, 'uploads')).catch(() => []);
    expect(uploads.filter((n) => !n.startsWith('.'))).toEqual([]);

    const path = await api.app.inject({ method: 'POST', url: '/v1/clips', payload: { path: join(api.roots, 'playlist.m3u8') } });
    expect(path.statusCode).toBe(422);
    expect(path.json()).toMatchObject({ error: { code: 'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER' } });
    if (atimeWorks) expect(await touched()).toEqual([]);
  });

  it("the workers label an uploaded MPEG-TS (the issue's x.ts), and an offset MP4 window by window", async () => {
    const upload = async (name: string, query = ''): Promise<Record<string, unknown>> => {
      const boundary = 'fwboundaryTS';
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
        await readFile(p(name)),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const up = await api.app.inject({ method: 'POST', url: `/v1/clips${query}`, payload: body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
      expect(up.statusCode, up.body).toBe(202);
      const { jobId } = up.json<{ jobId: string }>();
      const events = parseSse((await api.app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body);
      const last = events[events.length - 1];
      expect(last?.event, JSON.stringify(events)).toBe('result');
      const result = last?.data.result as Record<string, unknown>;
      assertValidResult(result);
      return result;
    };
    const ts = await upload('x.ts');
    expect([ts.ok, ts.error]).toEqual([true, undefined]);
    expect(ts.frames).toBe(16);
    const windowed = await upload('offset.mp4', '?windows=2,1');
    expect([windowed.ok, windowed.error]).toEqual([true, undefined]);
    expect((windowed.windows as Array<{ start: number; end: number; frames: number }>).map((w) => [w.start, w.end, w.frames])).toEqual([
      [0, 2, 16],
      [1, 3, 16],
      [2, 4, 16],
    ]);
  });
});

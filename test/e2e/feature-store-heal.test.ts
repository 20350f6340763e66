/**
 * Damaged feature-store entries through the built CLI (dist/): an entry whose data bytes were
 * flipped, and entries whose header says `"video": null` (the reported crash `Cannot read
 * properties of null (reading 'durationSec')`), are recomputed; the run labels every file.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { contentHash, decodeEntry, encodeEntry } from '../../src/features/feature-store.js';
import { resultLines } from '../helpers/cli-run.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js');

let dir: string;
let cache: string;
const clips: string[] = [];

function label(files: string[]): Promise<{ code: number | null; results: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, FRAMEWISE_LOG_LEVEL: 'warn', FRAMEWISE_CACHE_DIR: cache, FRAMEWISE_ENGINE: 'onnx', FRAMEWISE_THREADS: '1' };
    const child = spawn(process.execPath, [BIN, 'label', ...files, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, results: resultLines(stdout), stderr });
    });
  });
}

/** The store entry of a file (the one `.fwf` named after its content hash). */
async function entryOf(file: string): Promise<string> {
  const name = `${await contentHash(file)}.fwf`;
  const all = (await readdir(cache, { recursive: true })) as string[];
  const found = all.filter((p) => p.endsWith(name));
  expect(found, `one store entry for ${file}`).toHaveLength(1);
  return join(cache, found[0] as string);
}

beforeAll(async () => {
  dir = await makeTempDir();
  cache = join(dir, 'cache');
  for (const [i, motion] of (['zoom_in', 'pan_left', 'zoom_out'] as const).entries()) {
    const out = join(dir, `clip-${i}.mp4`);
    await makeClip({ ...randomClipSpec(motion, 900 + i), seconds: 2 }, out);
    clips.push(out);
  }
});
afterAll(() => removeDir(dir));

describe('label heals damaged feature-store entries', () => {
  let fresh: Array<Record<string, unknown>>;
  let freshEntries: Buffer[];

  it('a first run computes and stores every file', async () => {
    const run = await label(clips);
    expect(run.code, run.stderr).toBe(0);
    expect(run.results.map((r) => [r.ok, r.cached])).toEqual(clips.map(() => [true, false]));
    fresh = run.results;
    freshEntries = await Promise.all(clips.map(async (c) => readFile(await entryOf(c))));
  });

  it('an entry with flipped data bytes (same length) is recomputed: cached false, the fresh result and features', async () => {
    const file = await entryOf(clips[0] as string);
    const buf = Buffer.from(freshEntries[0] as Buffer);
    const at = buf.length - 4 - 32 - 64; // inside the float data
    for (let i = 0; i < 16; i++) buf[at + i] = (buf[at + i] as number) ^ 0x5a;
    await writeFile(file, buf);
    const run = await label([clips[0] as string]);
    expect(run.code, run.stderr).toBe(0);
    const [r] = run.results;
    expect(r?.cached).toBe(false);
    expect(r?.label).toBe(fresh[0]?.label);
    expect(r?.topK).toEqual(fresh[0]?.topK);
    // the entry written again holds the features of a fresh extraction
    expect(decodeEntry(await readFile(file))?.data).toEqual(decodeEntry(freshEntries[0] as Buffer)?.data);
  });

  it('an entry whose header has "video": null does not stop the run: every file is labelled, exit 0', async () => {
    const file = await entryOf(clips[1] as string);
    const seq = decodeEntry(freshEntries[1] as Buffer);
    expect(seq).toBeDefined();
    // a well-formed entry (valid checksum) with an incomplete header, as a buggy writer would leave it
    await writeFile(file, encodeEntry({ ...(seq as NonNullable<typeof seq>), video: null as never }));
    const run = await label(clips);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toContain('FW_ERR');
    expect(run.results.map((r) => [r.ok, r.cached])).toEqual([
      [true, true],
      [true, false],
      [true, true],
    ]);
    expect(run.results.map((r) => r.label)).toEqual(fresh.map((r) => r.label));
    expect(decodeEntry(await readFile(file))?.video).toEqual(seq?.video);
  });

  it('a format-1 entry with "video": null (the reported crash) is recomputed as well', async () => {
    const file = await entryOf(clips[2] as string);
    const seq = decodeEntry(freshEntries[2] as Buffer) as NonNullable<ReturnType<typeof decodeEntry>>;
    const header = Buffer.from(JSON.stringify({ key: seq.key, count: seq.count, dim: seq.dim, times: seq.times, video: null }));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(header.length);
    await writeFile(file, Buffer.concat([Buffer.from('FWF1'), len, header, Buffer.from(seq.data.buffer), Buffer.from('FWF$')]));
    const run = await label(clips);
    expect(run.code, run.stderr).toBe(0);
    expect(run.results.map((r) => [r.ok, r.cached])).toEqual([
      [true, true],
      [true, true],
      [true, false],
    ]);
  });
});

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandInputs, readClassFolders, readLabelledData, readManifest } from '../../src/features/inputs.js';
import { isFramewiseError } from '../../src/errors/index.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir();
  await mkdir(join(dir, 'data', 'run'), { recursive: true });
  await mkdir(join(dir, 'data', 'walk'), { recursive: true });
  await mkdir(join(dir, 'empty'), { recursive: true });
  for (const f of ['data/run/a.mp4', 'data/run/b.MOV', 'data/walk/c.mkv', 'data/walk/notes.txt', 'empty/readme.md']) await writeFile(join(dir, f), 'x');
});
afterAll(() => removeDir(dir));

describe('manifests', () => {
  it('reads path,label with extra columns; paths are relative to the manifest', async () => {
    const m = join(dir, 'm.csv');
    await writeFile(m, 'Path, label ,fold\ndata/run/a.mp4,run,0\n"data/walk/c.mkv",walk,1\n');
    const r = await readManifest(m, { requireLabel: true });
    expect(r.errors).toEqual([]);
    expect(r.items.map((i) => [i.path, i.label, i.extra.fold])).toEqual([
      [join(dir, 'data/run/a.mp4'), 'run', '0'],
      [join(dir, 'data/walk/c.mkv'), 'walk', '1'],
    ]);
  });

  it('a missing column is a manifest error naming it', async () => {
    const m = join(dir, 'nolabel.csv');
    await writeFile(m, 'file,label\na.mp4,run\n');
    await expect(readManifest(m, { requireLabel: true })).rejects.toMatchObject({ code: 'FW_ERR_MANIFEST_INVALID', message: expect.stringContaining('path') });
    const m2 = join(dir, 'nolabel2.csv');
    await writeFile(m2, 'path\na.mp4\n');
    await expect(readManifest(m2, { requireLabel: true })).rejects.toMatchObject({ code: 'FW_ERR_MANIFEST_INVALID', message: expect.stringContaining('label') });
    expect((await readManifest(m2, { requireLabel: false })).items).toHaveLength(1);
  });

  it('empty and unknown labels are row errors; the other rows go on', async () => {
    const m = join(dir, 'bad.csv');
    await writeFile(m, 'path,label\na.mp4,run\nb.mp4,\nc.mp4,swim\nd.mp4,walk\n');
    const r = await readManifest(m, { requireLabel: true, knownLabels: ['run', 'walk'] });
    expect(r.items.map((i) => i.label)).toEqual(['run', 'walk']);
    expect(r.errors.map((e) => e.error.code)).toEqual(['FW_ERR_MANIFEST_BAD_LABEL', 'FW_ERR_MANIFEST_BAD_LABEL']);
    expect(r.errors[1]!.error.message).toContain("'swim'");
  });

  it('folder-per-class layout gives labels from folder names', async () => {
    const r = await readClassFolders(join(dir, 'data'));
    expect(r.items.map((i) => [i.label, i.source])).toEqual([
      ['run', 'run/a.mp4'],
      ['run', 'run/b.MOV'],
      ['walk', 'walk/c.mkv'],
    ]);
    expect((await readLabelledData(join(dir, 'data'))).items).toHaveLength(3);
    await expect(readClassFolders(join(dir, 'empty'))).rejects.toMatchObject({ code: 'FW_ERR_INPUT_EMPTY_DIR' });
    await expect(readLabelledData(join(dir, 'nope.csv'))).rejects.toMatchObject({ code: 'FW_ERR_INPUT_NOT_FOUND' });
  });
});

describe('label inputs', () => {
  it('expands folders, globs, files and manifests; problems are per-input errors', async () => {
    const m = join(dir, 'list.csv');
    await writeFile(m, 'path\ndata/run/a.mp4\n');
    const r = await expandInputs([join(dir, 'data'), join(dir, 'data/walk/*.mkv'), join(dir, 'data/walk/notes.txt'), m, join(dir, 'empty'), join(dir, 'missing.mp4'), join(dir, 'nomatch/*.mp4')]);
    expect(r.items.map((i) => i.path)).toEqual([
      join(dir, 'data/run/a.mp4'),
      join(dir, 'data/run/b.MOV'),
      join(dir, 'data/walk/c.mkv'),
      join(dir, 'data/walk/c.mkv'),
      join(dir, 'data/walk/notes.txt'),
      join(dir, 'data/run/a.mp4'),
    ]);
    expect(r.errors.map((e) => e.error.code)).toEqual(['FW_ERR_INPUT_EMPTY_DIR', 'FW_ERR_INPUT_NOT_FOUND', 'FW_ERR_INPUT_EMPTY_DIR']);
    expect(r.errors.every((e) => isFramewiseError(e.error))).toBe(true);
  });
});

/** The vendored keypoint model files: their sha256 on disk, in the code's table and in the README. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KEYPOINT_MODELS, KEYPOINTS_DIR, keypointModelVersion, type KeypointModelId } from '../../src/ml/streams/keypoint-models.js';

const readme = readFileSync(join(KEYPOINTS_DIR, 'README.md'), 'utf8');

describe('vendored keypoint models', () => {
  for (const id of Object.keys(KEYPOINT_MODELS) as KeypointModelId[]) {
    it(`${id}: every file matches its recorded sha256, and the README lists the same`, () => {
      const files = Object.entries(KEYPOINT_MODELS[id].files);
      expect(files.length).toBe(2);
      for (const [file, want] of files) {
        const got = createHash('sha256').update(readFileSync(join(KEYPOINTS_DIR, id, file))).digest('hex');
        expect(got, `${id}/${file}`).toBe(want);
        expect(readme).toContain(`| \`${id}/${file}\` | \`${want}\` |`);
      }
      expect(keypointModelVersion(id)).toBe(`${id}@${KEYPOINT_MODELS[id].files[KEYPOINT_MODELS[id].weights]!.slice(0, 12)}`);
    });
  }

  it('ships the licence texts the README names', () => {
    expect(readFileSync(join(KEYPOINTS_DIR, 'LICENSE-Apache-2.0'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
    expect(readFileSync(join(KEYPOINTS_DIR, 'LICENSE-human-MIT'), 'utf8')).toMatch(/MIT License/);
  });
});

/**
 * Real CCTV clips (../shared/datasets/surv_fight, fight / noFight): the default training
 * configuration (default streams, feature kind and head; seeded, so the figures are the same every
 * run on the CPU backends) against the order-blind mean-pooling baseline trained on the same rows,
 * over the 5 group-disjoint folds of groups.csv (validation for early stopping grouped by source
 * video, never the test fold). Runs whenever the dataset is beside the project (it is in CI);
 * prints why when it is not. The full tables: README "Accuracy", docs/training.md.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crossValidateDefault, DATASETS } from '../helpers/real-data.js';

const DATA = join(DATASETS, 'surv_fight');
const present = existsSync(join(DATA, 'groups.csv'));
if (!present) console.warn(`surv_fight: ${DATA} not found; the real-data test does not run here`);

/**
 * Measured (seed 1, the same figures on every run on the CPU backends): the default (motion, a
 * 3-member ensemble) 71.7 % against 71.0 % for the mean-pooling ensemble on the same stream and
 * rows: 2 clips of 300 (one clip is 0.33 points of the 5-fold mean). The margin is small on these
 * data, and the test says only that: the default is not beaten by order-blind pooling here (README
 * "Accuracy": on egogestar_dev the same head is 65 points ahead).
 */
const MARGIN = 0.005;

describe.runIf(present)('surv_fight (real clips, group-disjoint folds)', () => {
  it('the default beats the mean-pooling baseline trained on the same rows, over 5 folds (seed 1)', async () => {
    const r = await crossValidateDefault({ manifest: join(DATA, 'groups.csv'), folds: { kind: 'column', column: 'fold' }, groupColumn: 'source_group', seed: 1 });
    const base = r.baseline?.mean.top1 ?? 0;
    console.log(`surv_fight, default (streams ${r.streams}): ${r.summary}`);
    expect(r.failed).toBe(0);
    expect(r.folds).toHaveLength(5);
    expect(r.mean.top1 - base).toBeGreaterThanOrEqual(MARGIN);
  }, 1_800_000);
});

/**
 * Cross-validation of the default training configuration (default streams, feature kind and
 * head) against the mean-pooling baseline on the same rows, on a real dataset beside the project
 * (`../shared/datasets`). Seeded: the same figures every run on the CPU backends.
 */
import { join } from 'node:path';
import { loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { readManifest } from '../../src/features/inputs.js';
import { DEFAULT_STREAMS, formatStreams, type StreamId } from '../../src/features/streams.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { collectStreamFeatures, createStreamExtractor, isRgbOnly, screenKeypointStreams } from '../../src/jobs/stream-features.js';
import { collectFeatures, DEFAULT_TRAIN_FEATURE, runCrossValidation, type CrossValidationResult, type FoldSpec } from '../../src/jobs/train.js';

export const DATASETS = join(PROJECT_ROOT, '..', 'shared', 'datasets');

/**
 * `streams`: the set to train (default: the training default); with `auto`, the set is chosen
 * inside each fold among `autoStreams` (default every loadable stream), as `train` would.
 */
export async function crossValidateDefault(o: { manifest: string; folds: FoldSpec; groupColumn: string; seed: number; epochs?: number; streams?: readonly StreamId[] | 'auto'; autoStreams?: StreamId[] }): Promise<CrossValidationResult & { failed: number; streams: string }> {
  const rt = runtimeFromConfig(loadConfig({}), { cacheDir: join(PROJECT_ROOT, '.cache', 'test-features'), featureKind: DEFAULT_TRAIN_FEATURE });
  const policy = { kind: 'uniform' as const, frames: 16 };
  const geometry = { size: 224, crop: 'center' as const };
  const items = (await readManifest(o.manifest, { requireLabel: true })).items;
  const requested = o.streams ?? DEFAULT_STREAMS;
  const streams = requested === 'auto' ? (await screenKeypointStreams(rt, policy, geometry, items, o.autoStreams)).kept : [...requested];
  const rgb = isRgbOnly(streams);
  const extractor = rgb ? await createExtractor(rt, policy, geometry) : await createStreamExtractor(rt, policy, geometry, streams);
  const data = rgb ? await collectFeatures(items, extractor as Awaited<ReturnType<typeof createExtractor>>) : await collectStreamFeatures(items, extractor as Awaited<ReturnType<typeof createStreamExtractor>>);
  await extractor.dispose();
  const result = await runCrossValidation({
    extractor,
    data,
    folds: o.folds,
    groupColumn: o.groupColumn,
    head: {},
    training: { seed: o.seed, ...(o.epochs ? { epochs: o.epochs } : {}) },
    baseline: true,
    ...(requested === 'auto' ? { auto: {} } : {}),
  });
  return { ...result, failed: data.failed.length, streams: formatStreams(requested) };
}

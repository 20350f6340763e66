/** A clip identity for job-id tests (pure: no files, no Redis). */
import type { ClipIdentity } from '../../src/jobs/queue/idempotency.js';

export const CLIP_IDENTITY: ClipIdentity = Object.freeze({
  contentHash: 'a'.repeat(64),
  model: { id: 'motion4', version: 'v1' },
  backbone: { id: 'mobilenet_v2_mid', version: 'nsfwjs@4.4.0', featureKind: 'pooled', dim: 1792 },
  sampling: { policy: { kind: 'uniform', frames: 16 }, size: 224, crop: 'center' },
  topK: 3,
}) as ClipIdentity;

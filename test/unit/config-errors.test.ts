import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_SCHEMA, loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { ERROR_CODES, FramewiseError, isFramewiseError } from '../../src/errors/index.js';

describe('configuration', () => {
  it('has documented defaults', () => {
    const c = loadConfig({ HOME: '/home/u' });
    expect(c.engine).toBe('onnx');
    expect(c.backbone).toBe('mobilenet_v2_mid');
    expect(c.cacheDir).toBe('/home/u/.cache/framewise');
    expect(c.modelDir).toBe(join(PROJECT_ROOT, 'pretrained', 'heads', 'motion4'));
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reports every invalid variable at once', () => {
    let err: unknown;
    try {
      loadConfig({ FRAMEWISE_ENGINE: 'pytorch', FRAMEWISE_BATCH_SIZE: '0', FRAMEWISE_BACKEND: 'webgl' });
    } catch (e) {
      err = e;
    }
    expect(isFramewiseError(err, 'FW_ERR_CONFIG_INVALID')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('FRAMEWISE_ENGINE');
    expect(msg).toContain('FRAMEWISE_BATCH_SIZE');
    expect(msg).toContain('FRAMEWISE_BACKEND');
  });

  it('every environment variable is documented in README.md', async () => {
    const readme = await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8');
    for (const key of Object.keys(ENV_SCHEMA.shape)) expect(readme, key).toContain(key);
  });
});

describe('errors', () => {
  it('every error code is documented in README.md with its meaning', async () => {
    const readme = await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8');
    for (const code of Object.keys(ERROR_CODES)) expect(readme, code).toContain(code);
  });

  it('carries code, permanence and cause', () => {
    const cause = new Error('disk');
    const e = new FramewiseError('FW_ERR_FEATURE_STORE', 'cannot write', { cause });
    expect(e.permanent).toBe(false);
    expect(e.cause).toBe(cause);
    expect(new FramewiseError('FW_ERR_MEDIA_NOT_VIDEO', 'x').permanent).toBe(true);
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 'FW_ERR_FEATURE_STORE', message: 'cannot write' });
  });
});

/**
 * onnxruntime's telemetry SDK leaves an empty `/tmp/mat-debug-<pid>.log` for every process that
 * creates a session; the onnx engine turns that telemetry off (ORT_DISABLE_TELEMETRY) before the
 * binding loads. A child process loads the ONNX backbone from dist/ (built by the test command)
 * and embeds one batch; its pid's log must not exist afterwards. The control run sets
 * ORT_DISABLE_TELEMETRY=0 (the user's explicit choice wins) and must leave the file: that is
 * what shows the check can fail.
 */
import { spawn } from 'node:child_process';
import { access, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const MODULE = pathToFileURL(join(PROJECT_ROOT, 'dist', 'src', 'ml', 'onnx', 'onnx-backbone.js')).href;

let cacheDir: string;
beforeAll(async () => {
  cacheDir = await makeTempDir();
});
afterAll(() => removeDir(cacheDir));

/** Load the backbone (conversion, session, warm-up embed) in a child, which then waits up to 5 s for the log to appear; its pid and exit code. */
function loadInChild(env: Record<string, string | undefined>): Promise<{ pid: number; code: number | null; stderr: string }> {
  const script = `import { createOnnxBackbone } from ${JSON.stringify(MODULE)};
const b = await createOnnxBackbone({ id: 'mobilenet_v2_mid', featureKind: 'pooled', cacheDir: ${JSON.stringify(cacheDir)}, threads: 1, batchSize: 1, log: () => undefined });
await b.embed(new Uint8Array(224 * 224 * 3), 1);
// the telemetry library writes its log from a thread of its own: give it up to 5 s before exiting
const { existsSync } = await import('node:fs');
for (let i = 0; i < 50 && !existsSync('/tmp/mat-debug-' + process.pid + '.log'); i++) await new Promise((r) => setTimeout(r, 100));
await b.dispose();`;
  return new Promise((resolve, reject) => {
    // the telemetry library stays silent when CI is set (as it is in CI): the child runs without it
    const childEnv: Record<string, string | undefined> = { ...process.env, CI: undefined, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ pid: child.pid as number, code, stderr }));
  });
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

describe('onnx engine: no telemetry debug log left in /tmp', () => {
  it('a process that loads the ONNX backbone leaves no /tmp/mat-debug-<pid>.log', async () => {
    const run = await loadInChild({ ORT_DISABLE_TELEMETRY: undefined }); // unset: framewise's default applies
    expect(run.code, run.stderr).toBe(0);
    const log = `/tmp/mat-debug-${run.pid}.log`;
    const left = await exists(log);
    await rm(log, { force: true });
    expect(left).toBe(false);
  });

  it('control: with telemetry explicitly on (ORT_DISABLE_TELEMETRY=0) the runtime writes that file', async () => {
    const run = await loadInChild({ ORT_DISABLE_TELEMETRY: '0' });
    expect(run.code, run.stderr).toBe(0);
    const log = `/tmp/mat-debug-${run.pid}.log`;
    const left = await exists(log);
    await rm(log, { force: true });
    expect(left).toBe(true);
  });
});

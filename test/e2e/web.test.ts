/**
 * The web page in a real browser (Debian chromium driven by playwright-core) against the real
 * API server, real workers (in this process), a real redis-server and real ffmpeg:
 *  - upload a generated video whose content changes at known times (zoom_in + pan_left + zoom_out,
 *    4 s each) with windows, follow its progress, and see the video with the timeline of the REAL
 *    windowed result (API → decode, embed, classify workers): three segments at the right places,
 *    a click on one seeks the video;
 *  - a batch started from the page, its progress, counts and results;
 *  - the models page: the registry's versions, the model in use, and promoting a version.
 * Screenshots go to test-output/screenshots/ for a person to look at.
 *
 * Needs /usr/bin/chromium (`bash scripts/setup.sh --test` installs Debian's `chromium`); the
 * test is skipped, saying so, when it is missing.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT, type Config } from '../../src/config/index.js';
import type { LabelSuccess } from '../../src/jobs/label.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { TemporalHead } from '../../src/ml/head.js';
import { ModelRegistry } from '../../src/ml/registry.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { ensureTestModel, makeBadFiles } from '../helpers/queue-fixtures.js';
import { makeChangingVideo } from '../helpers/windows-clips.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = join(PROJECT_ROOT, 'test-output', 'screenshots');
const haveChromium = existsSync(CHROMIUM);

let harness: ApiHarness;
let roots: string;
let config: Config;
let app: FastifyInstance;
let base: string;
let context: BrowserContext;
let page: Page;
let changing: string;
let truth: { boundaries: number[]; labels: string[]; durationSec: number };
const browserErrors: string[] = [];
let jobId: string;

beforeAll(async () => {
  if (!haveChromium) return;
  harness = await startApiHarness({
    name: 'web',
    ssePollMs: 100,
    prepare: async (r) => {
      await mkdir(join(r, 'batch'), { recursive: true });
      changing = join(r, 'changing.mp4');
      truth = await makeChangingVideo(changing);
      await Promise.all([
        makeClip({ ...randomClipSpec('pan_left', 7022), seconds: 2, fps: 25 }, join(r, 'batch', 'pan_left.mp4')),
        makeClip({ ...randomClipSpec('zoom_out', 705), seconds: 2, fps: 25 }, join(r, 'batch', 'zoom_out.mp4')),
      ]);
      await makeBadFiles(join(r, 'batch'), join(r, 'batch', 'pan_left.mp4')).then(({ empty, truncated }) => Promise.all([rm(empty), rm(truncated)]));
    },
  });
  ({ roots, config, app } = harness);
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  await mkdir(SHOTS, { recursive: true });
  context = await chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), 'fw-chromium-')), {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => browserErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') browserErrors.push(`console: ${m.text()}`);
  });
}, 300_000);

afterAll(async () => {
  await context?.close();
  await harness?.close();
});

interface ShownSegment {
  label: string;
  start: number;
  end: number;
  left: number;
  width: number;
}

/** The segments the timeline shows: their data and where they are drawn (fractions of the timeline's width). */
async function timelineSegments(): Promise<ShownSegment[]> {
  return page.$$eval('#timeline .segment', (els) => {
    const tl = (els[0]?.parentElement as HTMLElement).getBoundingClientRect();
    return els.map((el) => {
      const r = el.getBoundingClientRect();
      const d = (el as HTMLElement).dataset;
      return { label: d.label ?? '', start: Number(d.start), end: Number(d.end), left: (r.left - tl.left) / tl.width, width: r.width / tl.width };
    });
  });
}

async function jobStatus(id: string): Promise<{ state: string; result: LabelSuccess | null }> {
  const res = await fetch(`${base}/v1/jobs/${id}`);
  return (await res.json()) as { state: string; result: LabelSuccess | null };
}

describe.skipIf(!haveChromium)('web page (chromium)', () => {
  it('uploads a video with windows, shows per-stage progress, then the video with the timeline of its real segments', async () => {
    await page.goto(`${base}/`);
    await expect(page.title()).resolves.toBe('framewise');
    // the API labels window by window: the page offers it, on by default with `auto` (2 s windows every 1 s)
    await page.waitForSelector('#use-windows', { timeout: 10_000 });
    expect(await page.isChecked('#use-windows')).toBe(true);
    expect(await page.inputValue('#windows')).toBe('auto');
    await page.setInputFiles('#clip-file', changing);
    await page.click('#upload-button');
    await page.waitForURL(/#\/jobs\/clip-[0-9a-f]{32}$/, { timeout: 60_000 });
    jobId = /#\/jobs\/(clip-[0-9a-f]{32})$/.exec(page.url())?.[1] as string;
    await page.waitForSelector('#timeline .segment', { timeout: 120_000 });

    // the result the API and workers gave (no interception: the page shows what GET /v1/jobs/:id returns)
    const status = await jobStatus(jobId);
    expect(status.state).toBe('completed');
    const result = status.result as LabelSuccess;
    assertValidResult(result);
    expect(result.sampling).toMatchObject({ policy: 'windows:2,1:uniform:16', windowSec: 2, strideSec: 1 });
    expect(result.windows).toHaveLength(11);
    expect(result.segments?.map((s) => s.label)).toEqual(truth.labels);
    // every stage shown finished
    const stages = await page.$$eval('#stages .bar', (els) => els.map((e) => [(e as HTMLElement).dataset.stage, (e as HTMLElement).dataset.state]));
    expect(stages).toEqual([
      ['decode', 'completed'],
      ['embed', 'completed'],
      ['classify', 'completed'],
    ]);
    // the timeline shows the result's segments where they are: the three parts, each change within one stride
    const shown = await timelineSegments();
    expect(shown.map((s) => [s.label, s.start, s.end])).toEqual((result.segments ?? []).map((s) => [s.label, s.start, s.end]));
    expect(shown[0]?.left).toBeCloseTo(0, 2);
    expect(shown.reduce((a, s) => a + s.width, 0)).toBeCloseTo(1, 1);
    for (const [i, b] of truth.boundaries.entries()) {
      const seg = shown[i + 1] as ShownSegment;
      expect(Math.abs(seg.start - b)).toBeLessThanOrEqual(1); // within one stride of the true change
      expect(Math.abs(seg.left * truth.durationSec - seg.start)).toBeLessThan(0.1); // drawn where it is
    }
    await page.waitForSelector('#windows-heat', { timeout: 10_000 });
    expect(await page.$$eval('#segments tr.clickable', (els) => els.length)).toBe(3);
    expect(await page.textContent('#clip-label')).toBe(result.label);
    expect(await page.$$eval('#topk li', (els) => els.map((e) => (e as HTMLElement).dataset.label))).toEqual(result.topK.map((t) => t.label));
    expect(await page.getAttribute('#json-link', 'href')).toBe(`/v1/jobs/${jobId}`);

    // the video plays from the server (Range requests)
    await page.waitForFunction(() => (document.getElementById('video') as HTMLVideoElement).readyState >= 1, undefined, { timeout: 30_000 });
    const duration = await page.$eval('#video', (v) => (v as HTMLVideoElement).duration);
    expect(duration).toBeCloseTo(truth.durationSec, 0);
    await page.screenshot({ path: join(SHOTS, 'web-job-upload.png'), fullPage: true });
    expect(browserErrors).toEqual([]);
  });

  it('a reloaded job page draws the windowed result again; a click on a segment seeks the video', async () => {
    await page.goto(`${base}/#/jobs/${jobId}`);
    await page.reload();
    await page.waitForSelector('#windows-heat', { timeout: 30_000 });
    const shown = await timelineSegments();
    expect(shown.map((s) => s.label)).toEqual(truth.labels);
    await page.waitForFunction(() => (document.getElementById('video') as HTMLVideoElement).readyState >= 1, undefined, { timeout: 30_000 });
    await page.click('#timeline .segment[data-label="zoom_out"]');
    await page.waitForFunction((t) => Math.abs((document.getElementById('video') as HTMLVideoElement).currentTime - t) < 0.6, shown[2]?.start ?? 8, { timeout: 10_000 });
    await page.$eval('#video', (v) => (v as HTMLVideoElement).pause());
    await page.screenshot({ path: join(SHOTS, 'web-job-windows-timeline.png'), fullPage: true });
    expect(browserErrors).toEqual([]);
  });

  it('starts a batch from the page and shows its progress, counts and results', async () => {
    await page.goto(`${base}/#/batches`);
    await page.selectOption('#batch-kind', 'path');
    await page.fill('#batch-source', join(roots, 'batch'));
    await page.click('#batch-form button[type=submit]');
    await page.waitForURL(/#\/batches\/batch-[0-9a-f]{32}$/, { timeout: 30_000 });
    await page.waitForFunction(() => document.getElementById('batch-state')?.textContent === 'completed', undefined, { timeout: 120_000 });
    const counts = await page.$$eval('#batch-counts [data-count]', (els) => Object.fromEntries(els.map((e) => [(e as HTMLElement).dataset.count, Number(e.querySelector('b')?.textContent)])));
    expect(counts).toMatchObject({ total: 3, completed: 2, failed: 1 });
    await page.waitForFunction(() => document.querySelectorAll('#batch-results tr[data-ok]').length === 3, undefined, { timeout: 10_000 });
    expect(await page.$$eval('#batch-results tr[data-ok="false"]', (els) => els.map((e) => e.textContent))).toEqual([expect.stringContaining('FW_ERR_')]);
    const batchId = /#\/batches\/(batch-[0-9a-f]{32})$/.exec(page.url())?.[1] as string;
    expect(await page.getAttribute('#download-csv', 'href')).toBe(`/v1/batches/${batchId}/results?format=csv`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-jsonl')]);
    expect(download.suggestedFilename()).toBe(`${batchId}.jsonl`);
    await page.screenshot({ path: join(SHOTS, 'web-batch.png'), fullPage: true });
    // the list of batches shows it too
    await page.goto(`${base}/#/batches`);
    await page.waitForSelector('#batch-list table', { timeout: 10_000 });
    await page.screenshot({ path: join(SHOTS, 'web-batches.png'), fullPage: true });
    expect(browserErrors).toEqual([]);
  });

  it('renders the models page: versions, the model in use, and promote', async () => {
    // two versions of the bundled head in this server's registry; the first is promoted
    const registry = ModelRegistry.fromConfig(config);
    const versions: string[] = [];
    for (let i = 0; i < 2; i++) {
      const head = await TemporalHead.load(await ensureTestModel());
      versions.push((await registry.register(head, 'motion4')).version);
      head.dispose();
    }
    await page.goto(`${base}/#/models`);
    await page.waitForSelector('#models [data-model="motion4"]', { timeout: 10_000 });
    expect(await page.$$eval('#models [data-model="motion4"] [data-version]', (els) => els.map((e) => (e as HTMLElement).dataset.version))).toEqual([...versions].reverse());
    expect(await page.textContent(`[data-version="${versions[0]}"]`)).toContain('promoted');
    expect(await page.textContent('#current-model')).toContain('motion4');
    expect(await page.textContent('#models')).toContain('No trainings yet');
    await page.click(`[data-version="${versions[1]}"] button`);
    await page.waitForFunction((v) => document.querySelector(`[data-version="${v}"]`)?.textContent?.includes('promoted') === true, versions[1], { timeout: 10_000 });
    const model = (await (await fetch(`${base}/v1/models/motion4`)).json()) as { promoted: string };
    expect(model.promoted).toBe(versions[1]);
    await page.screenshot({ path: join(SHOTS, 'web-models.png'), fullPage: true });
    expect(browserErrors.filter((e) => !e.includes('404'))).toEqual([]);
  });
});

describe('web plugin without a browser', () => {
  it.skipIf(!haveChromium)('serves only the page\'s files, and video ranges', async () => {
    const index = await fetch(`${base}/`);
    expect(index.headers.get('content-type')).toContain('text/html');
    expect(await index.text()).toContain('/web/app.js');
    expect((await fetch(`${base}/web/app.js`)).headers.get('content-type')).toContain('javascript');
    expect((await fetch(`${base}/web/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${base}/web/nope.js`)).status).toBe(404);
    const cfg = await (await fetch(`${base}/v1/web/config`)).json();
    expect(cfg).toMatchObject({ pathInput: true, apiKeyRequired: false, windows: true });
    // the job's video, whole and by range (what <video> asks for to seek)
    const whole = await fetch(`${base}/v1/jobs/${jobId}/video`);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(whole.headers.get('content-type')).toBe('video/mp4');
    const size = (await whole.arrayBuffer()).byteLength;
    const part = await fetch(`${base}/v1/jobs/${jobId}/video`, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${size}`);
    expect((await part.arrayBuffer()).byteLength).toBe(100);
    expect((await fetch(`${base}/v1/jobs/${jobId}/video`, { headers: { range: `bytes=${size + 10}-` } })).status).toBe(416);
    expect((await fetch(`${base}/v1/jobs/clip-${'0'.repeat(32)}/video`)).status).toBe(404);
  });
});


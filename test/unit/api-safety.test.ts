/**
 * What the API and the CSV writers show: formula-looking CSV cells neutralised (numbers kept),
 * error messages without server paths or ffmpeg output.
 */
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { sanitizeMessage, toApiError } from '../../src/api/errors.js';
import type { LabelResult } from '../../src/jobs/label.js';
import { neutralizeCell, resultsToCsv } from '../../src/jobs/result-csv.js';

const ok = (path: string, label: string): LabelResult =>
  ({
    path,
    ok: true,
    label,
    confidence: 0.75,
    topK: [{ label, p: 0.75 }],
    model: { id: 'm', version: '@v1' },
    backbone: { id: 'b', version: '1', featureKind: 'pooled', engine: 'onnx', backend: null },
    sampling: { policy: 'uniform:16', size: 224, crop: 'center' },
    frames: 16,
    durationSec: 2,
    cached: false,
  }) as LabelResult;

describe('CSV cells', () => {
  it('neutralises cells that start with = + - @ tab or CR, in every result CSV; numbers stay numbers', () => {
    const csv = resultsToCsv([ok('=HYPERLINK("http://x")', '+cmd'), ok('@SUM(A1)', '-label'), { path: '\tclip.mp4', ok: false, error: { code: 'FW_ERR_MEDIA_CORRUPT', message: '=1+2' } }]);
    const rows = parse(csv, { columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => r.path)).toEqual([`'=HYPERLINK("http://x")`, `'@SUM(A1)`, `'\tclip.mp4`]);
    expect(rows.map((r) => r.label)).toEqual([`'+cmd`, `'-label`, '']);
    expect(rows[0]?.top_k).toBe(`'+cmd:0.75`);
    expect(rows[1]?.model_version).toBe(`'@v1`);
    expect(rows[2]?.error_message).toBe(`'=1+2`);
    expect(rows[0]?.confidence).toBe('0.75');
    expect(neutralizeCell(-0.5)).toBe(-0.5);
    expect(neutralizeCell('-0.5')).toBe('-0.5');
    expect(neutralizeCell('+1e-3')).toBe('+1e-3');
    expect(neutralizeCell('-1+2')).toBe(`'-1+2`);
    expect(neutralizeCell('clip.mp4')).toBe('clip.mp4');
  });
});

describe('API error messages', () => {
  it('drop ffmpeg output and absolute server paths (unless the caller gave the path)', () => {
    const probe = 'not a video file (ffprobe: [mov,mp4 @ 0x55d] moov atom not found\n/srv/data/uploads/abc.mp4: Invalid data found): /srv/data/uploads/abc.mp4';
    expect(sanitizeMessage(probe, 'FW_ERR_MEDIA_NOT_VIDEO')).toBe('not a video file: abc.mp4');
    const decode = 'no frame could be decoded (corrupt or truncated video): /srv/data/uploads/abc.mp4: [h264 @ 0x1] error while decoding MB 3 4';
    expect(sanitizeMessage(decode, 'FW_ERR_MEDIA_CORRUPT')).toBe('no frame could be decoded (corrupt or truncated video): abc.mp4');
    expect(sanitizeMessage('cannot read /srv/cache/features/x.bin', 'FW_ERR_FEATURE_STORE')).toBe('cannot read x.bin');
    expect(sanitizeMessage('/archive/a/b.mp4 is outside the allowed roots', 'FW_ERR_PATH_FORBIDDEN', new Set(['/archive/a/b.mp4']))).toBe('/archive/a/b.mp4 is outside the allowed roots');
    expect(sanitizeMessage('no such file: /archive/x/../etc/passwd', 'FW_ERR_INPUT_NOT_FOUND', new Set(['/archive/x']))).toBe('no such file: passwd');
    expect(sanitizeMessage('webhook https://hooks.example.com/a/b answered HTTP 500', 'FW_ERR_WEBHOOK_FAILED')).toBe('webhook https://hooks.example.com/a/b answered HTTP 500');
  });

  it('map malformed multipart bodies to FW_ERR_REQUEST_INVALID', () => {
    for (const m of ['Multipart: Boundary not found', 'Unexpected end of multipart data', 'Unexpected end of form', 'Malformed part header']) expect(toApiError(new Error(m)).code, m).toBe('FW_ERR_REQUEST_INVALID');
    expect(toApiError(new Error('something else')).code).toBe('FW_ERR_INTERNAL');
    expect(toApiError(Object.assign(new Error('reach files limit'), { code: 'FST_FILES_LIMIT', statusCode: 413 })).code).toBe('FW_ERR_REQUEST_INVALID');
    expect(toApiError(Object.assign(new Error('request file too large'), { code: 'FST_REQ_FILE_TOO_LARGE', statusCode: 413 })).code).toBe('FW_ERR_UPLOAD_TOO_LARGE');
  });
});

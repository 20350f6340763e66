/** The web plugin's pure parts: HTTP Range parsing for the job video route, and the page's file list. */
import { describe, expect, it } from 'vitest';
import { parseRange, WEB_FILES } from '../../src/api/web.js';

describe('HTTP Range for GET /v1/jobs/:id/video', () => {
  it('reads one byte range, open-ended and suffix forms, clamped to the file', () => {
    expect(parseRange(undefined, 1000)).toBeUndefined();
    expect(parseRange('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=900-', 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=-100', 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=990-5000', 1000)).toEqual({ start: 990, end: 999 });
  });

  it('refuses what cannot be satisfied (416)', () => {
    for (const bad of ['bytes=1000-', 'bytes=5-2', 'bytes=-0', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6']) expect(parseRange(bad, 1000), bad).toBe('invalid');
  });

  it('serves only the page\'s three files', () => {
    expect(Object.keys(WEB_FILES).sort()).toEqual(['app.js', 'index.html', 'style.css']);
  });
});

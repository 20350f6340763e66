import { describe, expect, it } from 'vitest';
import { formatSampling, parseSampling, samplingKey, sequenceLength, targetTimes } from '../../src/media/sampling.js';
import { buildDecodeArgs, buildGeometryFilters, buildProbeArgs, buildRateSelectExpr, buildTargetSelectExpr, isAllowedContainer, parseRefusedDemuxer, parseShowinfoTime } from '../../src/media/ffmpeg-args.js';
import { isFramewiseError } from '../../src/errors/index.js';

describe('sampling policies', () => {
  it('uniform: the centre of each of N equal segments, covering the whole clip', () => {
    const t = targetTimes({ kind: 'uniform', frames: 4 }, 0, 8);
    expect(t).toEqual([1, 3, 5, 7]);
    const shifted = targetTimes({ kind: 'uniform', frames: 2 }, 1.5, 2);
    expect(shifted).toEqual([2, 3]);
  });

  it('uniform never takes "the first N frames": the last target is in the last segment', () => {
    const t = targetTimes({ kind: 'uniform', frames: 16 }, 0, 60);
    expect(t[0]).toBeCloseTo(1.875);
    expect(t[15]).toBeCloseTo(58.125);
  });

  it('fps: k/fps from the start, capped at maxFrames', () => {
    expect(targetTimes({ kind: 'fps', fps: 2, maxFrames: 100 }, 0, 3)).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    expect(targetTimes({ kind: 'fps', fps: 10, maxFrames: 4 }, 0, 30)).toHaveLength(4);
  });

  it('parses and formats policy text, rejecting nonsense with the allowed forms', () => {
    expect(parseSampling('uniform:8')).toEqual({ kind: 'uniform', frames: 8 });
    expect(parseSampling('fps:2.5:32')).toEqual({ kind: 'fps', fps: 2.5, maxFrames: 32 });
    expect(formatSampling(parseSampling('fps:3'))).toBe('fps:3:64');
    for (const bad of ['uniform:0', 'uniform:x', 'fps:-1', 'first:16', '']) {
      let err: unknown;
      try {
        parseSampling(bad);
      } catch (e) {
        err = e;
      }
      expect(isFramewiseError(err, 'FW_ERR_CONFIG_INVALID'), bad).toBe(true);
      expect(String((err as Error).message)).toContain('uniform:N');
    }
  });

  it('keys and lengths depend on the whole policy and geometry', () => {
    const a = samplingKey({ kind: 'uniform', frames: 16 }, { size: 224, crop: 'center' });
    expect(a).toBe('uniform16-224-center');
    expect(samplingKey({ kind: 'uniform', frames: 16 }, { size: 224, crop: 'squash' })).not.toBe(a);
    expect(sequenceLength({ kind: 'fps', fps: 1, maxFrames: 30 })).toBe(30);
  });
});

describe('ffmpeg argument building', () => {
  it('selects the first frame at or after each target, each frame at most once', () => {
    const e = buildTargetSelectExpr([1, 2], 0.02);
    expect(e).toBe('gt(gte(t\\,0.98)*(isnan(prev_selected_t)+lt(prev_selected_t\\,0.98))+gte(t\\,1.98)*(isnan(prev_selected_t)+lt(prev_selected_t\\,1.98))\\,0)');
  });

  it('rate selection buckets time from the stream start', () => {
    expect(buildRateSelectExpr(2, 0.5, 0.01)).toContain('floor((t-0.49)*2)');
  });

  it('scales with square pixels, then centre-crops or squashes', () => {
    const center = buildGeometryFilters({ size: 224, crop: 'center' }).join(',');
    expect(center).toContain('force_original_aspect_ratio=increase');
    expect(center).toContain('crop=224:224');
    expect(center).toContain('iw*sar');
    const squash = buildGeometryFilters({ size: 112, crop: 'squash' }).join(',');
    expect(squash).toContain('scale=112:112');
    expect(squash).not.toContain('crop=');
  });

  it('probe and decode read one local file: file protocol only, allowed demuxers only, decode pinned to the probed one', () => {
    const probeArgs = buildProbeArgs('file:/v/a.mp4');
    const plan = buildDecodeArgs('file:/v/a.mp4', { kind: 'uniform', frames: 4 }, { size: 8, crop: 'center' }, { demuxer: 'mov', duration: 2, frameInterval: 0.04 }, [0.25, 0.75, 1.25, 1.75]);
    for (const args of [probeArgs, plan.args]) {
      expect(args[args.indexOf('-protocol_whitelist') + 1]).toBe('file');
      const formats = (args[args.indexOf('-format_whitelist') + 1] as string).split(',');
      expect(formats).toEqual(expect.arrayContaining(['mov', 'matroska', 'mpegts']));
      for (const refused of ['hls', 'dash', 'concat', 'image2', 'sdp', 'rtp', 'rtsp', 'imf', 'vobsub']) expect(formats).not.toContain(refused);
    }
    expect(probeArgs.indexOf('-format_whitelist')).toBeLessThan(probeArgs.indexOf('file:/v/a.mp4'));
    expect(plan.args.slice(plan.args.indexOf('-f'), plan.args.indexOf('-i') + 2)).toEqual(['-f', 'mov', '-i', 'file:/v/a.mp4']);
    // the clock starts at the first frame, before frames are selected
    expect(plan.args[plan.args.indexOf('-vf') + 1]).toMatch(/^setpts=PTS-STARTPTS,select=/);
    expect([isAllowedContainer('mov,mp4,m4a,3gp,3g2,mj2'), isAllowedContainer('matroska,webm'), isAllowedContainer('hls'), isAllowedContainer('image2')]).toEqual([true, true, false, false]);
    expect(parseRefusedDemuxer("[hls @ 0x5604949] Format not on whitelist 'mov,matroska'\n")).toBe('hls');
    expect(parseRefusedDemuxer('[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] moov atom not found')).toBeUndefined();
  });

  it('reads showinfo timestamps and ignores other lines', () => {
    expect(parseShowinfoTime('[Parsed_showinfo_5 @ 0x1] n:   3 pts:  40960 pts_time:3.2     duration: 512')).toBe(3.2);
    expect(parseShowinfoTime('frame=   16 fps=0.0 q=-0.0 Lsize=N/A time=00:00:02.88')).toBeUndefined();
  });
});

/**
 * The evaluation report as data (`report.json`) and as one self-contained HTML page
 * (`report.html`: inline CSS and SVG, contact sheets as data: URIs; no script, no CDN).
 * Pure functions: no I/O.
 */
import type { Calibration, ClassMetrics, UnknownScore } from './metrics.js';

export interface ReportMistake {
  path: string;
  label: string;
  predicted: string;
  /** Probability of the predicted class. */
  p: number;
  /** Probability the model gave the true class. */
  pTrue: number;
  /** File name of the contact sheet (relative to the report folder), when one was made. */
  sheet?: string;
  /** Sampled times (s) of the frames in the sheet. */
  times?: number[];
}

/** `report.json`: the eval JSON contract plus calibration, mistakes, unknown option and baseline. */
export interface EvalReport {
  top1: number;
  top5: number;
  meanClassAccuracy: number;
  perClass: ClassMetrics[];
  confusionMatrix: number[][];
  labels: string[];
  n: number;
  model: { id: string; version: string };
  failed: Array<{ path: string; code: string; message: string }>;
  created: string;
  data: { source: string };
  backbone: { id: string; version: string; featureKind: string };
  sampling: { policy: string; size: number; crop: string };
  head: Record<string, unknown>;
  calibration: Calibration;
  /** The model's `unknown` threshold applied to these predictions. */
  unknown: UnknownScore;
  hardestMistakes: ReportMistake[];
  /** The order-blind mean-pooling baseline trained on the model's training data, evaluated on the same rows (when asked). */
  baseline?: { head: 'mean'; top1: number; meanClassAccuracy: number; trainN: number; trainSource: string };
  /** The per-frame streams the model reads (absent: rgb alone). */
  streams?: string[];
  /** How `--streams auto` chose them: every candidate's validation top-1 (mean, sd over seeds) and cost. */
  streamChoice?: { chosen: string[]; rule: string; candidates: Array<{ streams: string[]; mean: number; sd: number; valTop1: number[]; framesPerSec: number | null }> };
}

export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
const pct = (x: number, digits = 1): string => `${(x * 100).toFixed(digits)} %`;

/** Confusion matrix (rows true, columns predicted) as an SVG heat map, shaded by row share, with counts. */
export function confusionMatrixSvg(labels: readonly string[], matrix: readonly (readonly number[])[]): string {
  const n = labels.length;
  const cell = n <= 6 ? 64 : n <= 12 ? 44 : n <= 30 ? 26 : 14;
  const longest = Math.min(24, Math.max(...labels.map((l) => l.length), 4));
  const margin = 14 + longest * 7;
  const size = n * cell;
  const w = margin + size + 10;
  const h = margin + size + 34;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="confusion" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="confusion matrix">`);
  parts.push(`<text x="${margin + size / 2}" y="${h - 6}" text-anchor="middle" font-size="12">predicted</text>`);
  parts.push(`<text x="12" y="${margin + size / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 ${margin + size / 2})">true</text>`);
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((v, j) => {
      const share = total > 0 ? v / total : 0;
      const x = margin + j * cell;
      const y = margin + i * cell;
      const hue = i === j ? 140 : 5;
      const light = Math.round(97 - share * 55);
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="hsl(${hue},60%,${light}%)" stroke="#fff"><title>${escapeHtml(labels[i] ?? '')} → ${escapeHtml(labels[j] ?? '')}: ${v} (${pct(share)})</title></rect>`);
      if (cell >= 20) parts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" font-size="${cell >= 40 ? 13 : 10}" fill="${share > 0.6 ? '#fff' : '#222'}">${v}</text>`);
    });
  });
  labels.forEach((l, k) => {
    const short = escapeHtml(l.length > longest ? `${l.slice(0, longest - 1)}…` : l);
    parts.push(`<text x="${margin - 4}" y="${margin + k * cell + cell / 2 + 4}" text-anchor="end" font-size="11">${short}</text>`);
    const cx = margin + k * cell + cell / 2;
    parts.push(`<text x="${cx}" y="${margin - 4}" text-anchor="start" font-size="11" transform="rotate(-45 ${cx} ${margin - 4})">${short}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below, ECE in the title. */
export function reliabilitySvg(cal: Calibration): string {
  const W = 320;
  const H = 320;
  const m = 36;
  const plot = W - m - 12;
  const x = (v: number): number => m + v * plot;
  const y = (v: number): number => 12 + (1 - v) * plot;
  const maxN = Math.max(1, ...cal.bins.map((b) => b.n));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="reliability" width="${W}" height="${H + 56}" viewBox="0 0 ${W} ${H + 56}" role="img" aria-label="reliability diagram">`);
  parts.push(`<rect x="${m}" y="12" width="${plot}" height="${plot}" fill="#fafafa" stroke="#999"/>`);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<text x="${x(t)}" y="${12 + plot + 14}" text-anchor="middle" font-size="10">${t}</text>`);
    parts.push(`<text x="${m - 4}" y="${y(t) + 3}" text-anchor="end" font-size="10">${t}</text>`);
  }
  for (const b of cal.bins) {
    if (b.n === 0) continue;
    const bw = Math.round((b.hi - b.lo) * plot * 10) / 10;
    parts.push(`<rect x="${(x(b.lo) + 1).toFixed(1)}" y="${y(b.accuracy).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(b.accuracy * plot).toFixed(1)}" fill="#4a7fc1" fill-opacity="0.8"><title>confidence ${b.lo.toFixed(1)}–${b.hi.toFixed(1)}: n=${b.n}, accuracy ${pct(b.accuracy)}, mean confidence ${pct(b.confidence)}</title></rect>`);
    parts.push(`<rect x="${(x(b.lo) + 1).toFixed(1)}" y="${(H + 40 - (b.n / maxN) * 28).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${((b.n / maxN) * 28).toFixed(1)}" fill="#999"/>`);
  }
  parts.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#c33" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${m + plot / 2}" y="${12 + plot + 28}" text-anchor="middle" font-size="11">top-1 confidence (bars: accuracy; grey: count) — ECE ${cal.ece.toFixed(3)}</text>`);
  parts.push('</svg>');
  return parts.join('');
}

/** The whole page. `images` maps a mistake's sheet file name to a data: URI. */
export function renderReportHtml(r: EvalReport, images: ReadonlyMap<string, string> = new Map()): string {
  const rows = r.perClass
    .map((c) => `<tr><td>${escapeHtml(c.label)}</td><td>${c.support}</td><td>${c.precision.toFixed(3)}</td><td>${c.recall.toFixed(3)}</td><td>${c.f1.toFixed(3)}</td></tr>`)
    .join('');
  const baseline = r.baseline
    ? `<tr><th>mean-pooling baseline top-1</th><td>${pct(r.baseline.top1)} <span class="muted">(mean class accuracy ${pct(r.baseline.meanClassAccuracy)}; trained on ${r.baseline.trainN} clips of ${escapeHtml(r.baseline.trainSource)})</span></td></tr>`
    : '';
  const mistakes = r.hardestMistakes
    .map((m) => {
      const img = m.sheet ? images.get(m.sheet) : undefined;
      const pic = img ? `<img src="${img}" alt="sampled frames of ${escapeHtml(m.path)}">` : '<div class="muted">(no contact sheet)</div>';
      return `<figure>${pic}<figcaption><b>${escapeHtml(m.path)}</b><br>true <b>${escapeHtml(m.label)}</b> (p ${m.pTrue.toFixed(3)}), predicted <b>${escapeHtml(m.predicted)}</b> (p ${m.p.toFixed(3)})</figcaption></figure>`;
    })
    .join('');
  const choice = r.streamChoice
    ? `<h2>Stream sets tried (--streams auto)</h2><p class="muted">${escapeHtml(r.streamChoice.rule)}</p><table class="streams"><tr><th>streams</th><th>validation top-1 (mean ± sd)</th><th>per seed</th><th>embedding frames/s</th></tr>${r.streamChoice.candidates
        .map((c) => {
          const chosen = c.streams.join(',') === r.streamChoice?.chosen.join(',');
          return `<tr><td>${chosen ? '<b>' : ''}${escapeHtml(c.streams.join(', '))}${chosen ? '</b> (chosen)' : ''}</td><td>${pct(c.mean)} ± ${pct(c.sd)}</td><td>${c.valTop1.map((v) => pct(v)).join(' / ')}</td><td>${c.framesPerSec === null ? '—' : c.framesPerSec.toFixed(1)}</td></tr>`;
        })
        .join('')}</table>`
    : '';
  const failed = r.failed.length > 0 ? `<h2>Skipped inputs (${r.failed.length})</h2><ul>${r.failed.map((f) => `<li>${escapeHtml(f.path)}: ${escapeHtml(f.code)}</li>`).join('')}</ul>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>framewise evaluation: ${escapeHtml(r.model.id)} ${escapeHtml(r.model.version)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#f4f4f4}
.muted{color:#777}.pics{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;max-width:100%}figure img{max-width:100%;image-rendering:auto;border:1px solid #ccc}
.row{display:flex;flex-wrap:wrap;gap:32px;align-items:flex-start}
</style></head><body>
<h1>Evaluation of ${escapeHtml(r.model.id)} <span class="muted">${escapeHtml(r.model.version)}</span></h1>
<p class="muted">${escapeHtml(r.data.source)} · ${r.n} clips · ${escapeHtml(r.created)} · backbone ${escapeHtml(r.backbone.id)} (${escapeHtml(r.backbone.featureKind)}) · streams ${escapeHtml((r.streams ?? ['rgb']).join(', '))} · sampling ${escapeHtml(r.sampling.policy)} ${r.sampling.size}px ${escapeHtml(r.sampling.crop)}</p>
<h2>Metrics</h2>
<table class="metrics"><tr><th>top-1</th><td>${pct(r.top1)}</td></tr><tr><th>top-5</th><td>${pct(r.top5)}</td></tr><tr><th>mean class accuracy</th><td>${pct(r.meanClassAccuracy)}</td></tr>
<tr><th>expected calibration error</th><td>${r.calibration.ece.toFixed(3)}</td></tr>
<tr><th>unknown threshold</th><td>${r.unknown.threshold.toFixed(3)} <span class="muted">(answered ${pct(1 - r.unknown.unknownRate)}, of which right ${pct(r.unknown.precision)}; macro-F1 with unknown ${r.unknown.macroF1.toFixed(3)})</span></td></tr>${baseline}</table>
<table class="per-class"><tr><th>class</th><th>n</th><th>precision</th><th>recall</th><th>F1</th></tr>${rows}</table>
<div class="row"><div><h2>Confusion matrix</h2><p class="muted">rows: true class, columns: predicted</p>${confusionMatrixSvg(r.labels, r.confusionMatrix)}</div>
<div><h2>Calibration</h2>${reliabilitySvg(r.calibration)}</div></div>
<h2>Hardest mistakes</h2><p class="muted">The most confident wrong predictions, with the frames the model saw.</p>
<div class="pics">${mistakes || '<p>No mistakes.</p>'}</div>
${choice}
${failed}
</body></html>
`;
}

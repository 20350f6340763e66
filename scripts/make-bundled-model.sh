#!/usr/bin/env bash
# Rebuild the bundled model (pretrained/heads/motion4) and the sample clips (samples/) from
# generated data: 150 clips per camera motion for training (each scene appears in all four
# motions, so the head must learn the direction of change, not the scenery), 12 per motion
# held out for the reported test accuracy, 2 per motion as samples/. Deterministic up to
# ffmpeg/x264 versions; about 10 minutes on 2 cores (features are cached in .cache/framewise).
set -euo pipefail
cd "$(dirname "$0")/.."
work=.cache/bundled-data
cache=.cache/framewise
[ -f "$work/train150/manifest.csv" ] || node dist/scripts/make-synthetic.js --out "$work/train150" --per-class 150 --seed 1000
[ -f "$work/test/manifest.csv" ] || node dist/scripts/make-synthetic.js --out "$work/test" --per-class 12 --seed 500000
rm -rf "$work/samples"
node dist/scripts/make-synthetic.js --out "$work/samples" --per-class 2 --seed 900000
node dist/src/cli/bin.js train --manifest "$work/train150/manifest.csv" --out pretrained/heads/motion4 --id motion4 \
  --streams rgb --no-report --epochs 80 --patience 12 --seed 7 --cache-dir "$cache" --log-level warn
echo "held-out test set (12 clips per motion):"
node dist/src/cli/bin.js eval --model pretrained/heads/motion4 --manifest "$work/test/manifest.csv" --cache-dir "$cache" --log-level warn
rm -f samples/*.mp4
for f in "$work"/samples/*/*.mp4; do cp "$f" samples/; done
{ echo "path,label"; for f in samples/*.mp4; do b=$(basename "$f"); echo "$b,${b%-*}"; done; } > samples/manifest.csv
echo "samples:"
node dist/src/cli/bin.js eval --model pretrained/heads/motion4 --manifest samples/manifest.csv --cache-dir "$cache" --log-level warn

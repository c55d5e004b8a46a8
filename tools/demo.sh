#!/usr/bin/env bash
# The demo, start to finish on a fresh machine:
#   1. set up the environment (system packages + .venv),
#   2. fetch free music from Debian packages into data/audio (20 catalogue tracks, >= 100 wrong tracks),
#   3. enrol the catalogue into data/model with the default fingerprint engine (the shipped encoder
#      embeds every track; the wrong tracks calibrate the no-match threshold),
#   4. cut a few 2.5 s fragments (one clean, one pitch-shifted, one sped up, one not in the catalogue)
#      with sox and identify them,
#   5. serve the catalogue on http://127.0.0.1:8080 (Ctrl-C stops it; the admin token is printed once).
# Re-running skips every finished step. Takes about 5 minutes on 2 CPU cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup_env.sh
bash tools/fetch_demo.sh
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/audiocopy enroll --db data/model --negatives data/audio/wav_wrong \
  data/audio/wav_licensed

mkdir -p data/demo
lic=(data/audio/wav_licensed/*.wav)
wrong=(data/audio/wav_wrong/*.wav)
a=${lic[0]}; b=${lic[5]}; c=${lic[10]}; n=${wrong[3]}
sox "$a" data/demo/clean.wav trim 20 2.5
sox "$b" data/demo/pitch_up_2_semitones.wav trim 20 2.5 pitch 200
sox "$c" data/demo/speed_1.1.wav trim 20 2.75 speed 1.1
sox "$n" data/demo/not_in_catalog.wav trim 20 2.5
echo
echo "fragments cut from: $(basename "$a" .wav), $(basename "$b" .wav), $(basename "$c" .wav); negative: $(basename "$n" .wav)"
.venv/bin/audiocopy identify --db data/model --json data/demo/*.wav
echo
echo "serving the demo catalogue: open http://127.0.0.1:8080 (Live page: press Start and play one of its tracks)"
exec .venv/bin/audiocopy serve --db data/model --negatives-dir data/audio/wav_wrong

#!/usr/bin/env bash
# Set up everything audiocopy needs on a fresh Debian/Ubuntu machine with Python 3.11:
# system packages (ffmpeg for pydub, sox/lame for the benchmark's independent distortions)
# and a virtual environment in .venv with the package installed in editable mode.
#
# Usage: tools/setup_env.sh [EXTRAS]     e.g. tools/setup_env.sh test   or   tools/setup_env.sh test,gpu
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v sox >/dev/null 2>&1 || need+=(sox libsox-fmt-all)
command -v lame >/dev/null 2>&1 || need+=(lame)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
spec=.; [ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install -q -e "$spec"
echo "environment ready: .venv ($(.venv/bin/python --version))"

#!/usr/bin/env bash
# One set-up command for svc_pl: Debian packages the tests and the demo use (espeak-ng speaks the
# demo's and tests' speech, sox converts audio, chromium + chromium-driver run the web UI's browser test),
# then the package with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && ! command -v espeak-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng sox libportaudio2 >/dev/null \
    || echo "warning: could not install espeak-ng/sox with apt-get; install them by hand for the tests and demo" >&2
fi
# the web UI's browser test drives Debian's headless chromium with its chromedriver
if command -v apt-get >/dev/null 2>&1 && ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "warning: could not install chromium/chromium-driver with apt-get; install them by hand for the web UI's browser test" >&2
fi
python -m pip install -q -e ".[dev]"

#!/usr/bin/env bash
# Create .venv and install raynas with its dependencies (and pytest).
# Idempotent: a second run only checks that nothing changed and returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"
STAMP="$VENV/.raynas-installed"
# torch and torchvision are pinned to the pair this platform serves from local disk (CUDA build;
# it runs on CPU too). Override with TORCH_SPEC="torch==X torchvision==Y" on other platforms.
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $TORCH_SPEC"

# Headless Chromium renders report.html in tests/test_analysis.py: installed only when missing, only as root.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the report-rendering test will be skipped" >&2
fi

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $TORCH_SPEC
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
echo "$WANT" > "$STAMP"
echo "raynas installed in $VENV"

#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/gpu_check.py and cluster/GPU.md):
#   bash benchmarks/gpu_check.sh [--out-dir DIR] [other gpu_check.py options]
# Uses $PYTHON, else .venv/bin/python, else python3; writes into benchmarks_out/gpu_check/ unless --out-dir is given.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
case " $* " in
  *" --out-dir"*) exec "$PY" benchmarks/gpu_check.py "$@" ;;
  *) exec "$PY" benchmarks/gpu_check.py --out-dir benchmarks_out/gpu_check "$@" ;;
esac

#!/usr/bin/env bash
# A real Ray cluster on this machine, a raynas search submitted to it as a Ray job, the results, and
# the cluster stopped again -- the same steps as on a cloud cluster (cluster/README.md), in ~1-2 min.
#
#   bash cluster/local_cluster_demo.sh            # from the repository root, after scripts/setup.sh
#
# What it does:
#   1. starts a Ray head on 127.0.0.1 with the dashboard (the Jobs API) on a free port, token
#      authentication on (Ray 2.60: RAY_AUTH_MODE=token, token in $HOME/.ray/auth_token), and a
#      private HOME and --temp-dir so nothing touches your own ~/.ray or other Ray instances;
#   2. writes a small synthetic NAS-Bench-201 table into a job directory;
#   3. `ray job submit --working-dir <job dir> -- python -m raynas.cli search --benchmark ...`
#      (a tabular search: seconds, no GPU) and follows its logs until it ends;
#   4. shows `ray job status`, the results in storage and `raynas analyze` of them;
#   5. stops the head -- always, also on failure or Ctrl+C (trap).
#
# The head is stopped by signalling its own `ray start --block` process, not with `ray stop`:
# `ray stop` kills every Ray process of the machine (it matches processes by name), including
# other people's Ray sessions on a shared machine. On a machine of your own, `ray stop` is fine.
#
# Environment: PYTHON (default .venv/bin/python), KEEP=1 keeps the demo directory for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
RAY="$(dirname "$PYTHON")/ray"
[ -x "$RAY" ] || { echo "no ray CLI next to $PYTHON: run scripts/setup.sh first" >&2; exit 1; }
"$PYTHON" -c 'import ray._private.utils as u, sys; e = u.get_dashboard_dependency_error(); sys.exit(e and f"the Ray dashboard (Jobs API) cannot start: {e}; pip install \"ray[default]\"")'

DEMO="$(mktemp -d /tmp/raynas-demo-XXXXXX)"   # short: Ray's socket paths must stay < 108 bytes
HEAD_PID=""

stop_head() {
  status=$?
  if [ -n "$HEAD_PID" ] && kill -0 "$HEAD_PID" 2>/dev/null; then
    echo "== stopping the Ray head (pid $HEAD_PID)"
    kill -TERM "$HEAD_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$HEAD_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$HEAD_PID" 2>/dev/null || true
  fi
  if [ -n "$HEAD_PID" ]; then
    # Whatever is left of this head: processes of its session, or naming the demo directory.
    for pid in $(ps -eo pid=,sid= | awk -v s="$HEAD_PID" '$2 == s {print $1}') \
               $(pgrep -f "$DEMO" || true); do
      [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $DEMO"; else rm -rf "$DEMO"; fi
  exit $status
}
trap stop_head EXIT
trap 'exit 130' INT TERM

read -r GCS DASH AGENT_HTTP AGENT_GRPC RUNTIME_ENV METRICS CLIENT NODE_MANAGER OBJECT_MANAGER < <("$PYTHON" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(9)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

export HOME="$DEMO/home" RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_AIR_NEW_OUTPUT=0 PYTHONUNBUFFERED=1
export PATH="$(dirname "$PYTHON"):$PATH"   # the job's `python` is this interpreter (raynas installed)
unset RAY_ADDRESS
mkdir -p "$HOME"
"$RAY" get-auth-token --generate > /dev/null

echo "== starting a Ray head: GCS 127.0.0.1:$GCS, dashboard http://127.0.0.1:$DASH (logs: $DEMO/head.log)"
setsid "$RAY" start --head --block --port="$GCS" --num-cpus=2 --num-gpus=0 \
  --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASH" \
  --dashboard-agent-listen-port="$AGENT_HTTP" --dashboard-agent-grpc-port="$AGENT_GRPC" \
  --runtime-env-agent-port="$RUNTIME_ENV" --metrics-export-port="$METRICS" \
  --ray-client-server-port="$CLIENT" --node-manager-port="$NODE_MANAGER" \
  --object-manager-port="$OBJECT_MANAGER" --temp-dir="$DEMO/ray" --disable-usage-stats \
  > "$DEMO/head.log" 2>&1 &
HEAD_PID=$!
ADDRESS="http://127.0.0.1:$DASH"
for i in $(seq 90); do
  kill -0 "$HEAD_PID" 2>/dev/null || { tail -40 "$DEMO/head.log"; echo "ray start failed" >&2; exit 1; }
  "$RAY" job list --address "$ADDRESS" > /dev/null 2>&1 && break
  [ "$i" = 90 ] && { tail -40 "$DEMO/head.log"; echo "the Jobs API did not come up" >&2; exit 1; }
  sleep 1
done

echo "== writing a synthetic NB201 table into the job directory"
mkdir -p "$DEMO/job"
PYTHONPATH="$REPO" "$PYTHON" -c "
from tests.conftest import synthetic_nb201_frame
synthetic_nb201_frame().to_csv('$DEMO/job/synthetic_nb201.csv', index=False)"

echo "== ray job submit (follows the logs until the job ends)"
"$RAY" job submit --address "$ADDRESS" --submission-id raynas-demo --working-dir "$DEMO/job" -- \
  python -m raynas.cli search --benchmark synthetic_nb201.csv --objective val_200 --test-metric test_200 \
  --fidelities val_12:12 --objective-epochs 200 --searcher regevo --num-samples 32 --max-concurrent 2 \
  --grace-period 12 --reduction-factor 2 --storage "$DEMO/results" --name demo --seed 0

echo "== ray job status"
"$RAY" job status --address "$ADDRESS" raynas-demo
echo "== results in storage: $DEMO/results/demo"
ls "$DEMO/results/demo"
echo "== raynas analyze"
"$PYTHON" -m raynas.cli analyze "$DEMO/results/demo"

"""``raynas search`` as a Ray job on a real (single-node) Ray cluster, through the Jobs API.

One module-scoped head started with ``ray start --head --block`` on free ports,
dashboard (the Jobs API) on 127.0.0.1, token authentication on (Ray 2.60:
``RAY_AUTH_MODE=token`` with the token in ``$HOME/.ray/auth_token``; HOME and
``--temp-dir`` are private to the test). Jobs are submitted with the ``ray``
CLI exactly as a user would (``ray job submit --address http://127.0.0.1:PORT
--working-dir DIR -- python -m raynas.cli search ...``).

Teardown never runs ``ray stop``: that kills every Ray process on the machine
(it matches processes by name), including other people's. The head is stopped
by SIGTERM to its ``ray start --block`` process, which takes its Ray processes
down; anything left in its session, or naming this test's private directory,
is then killed by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster.tune_state import newest_trials

RAY_CLI = Path(sys.executable).with_name("ray")
REPO = Path(__file__).resolve().parents[2]
RUNTIME_ENV = REPO / "cluster" / "runtime_env.yaml"


def _missing_prerequisite() -> str | None:
    if not RAY_CLI.exists():
        return f"the ray CLI is not installed next to {sys.executable} (expected {RAY_CLI})"
    from ray._private.utils import get_dashboard_dependency_error

    error = get_dashboard_dependency_error()
    if error is not None:
        return (
            f"Ray's dashboard (needed by the Jobs API and `ray job submit`) cannot start: {error}. "
            "Install ray[default] (pip install 'ray[default]')"
        )
    return None


_MISSING = _missing_prerequisite()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


@dataclass
class LocalCluster:
    """A running head: its Jobs API address, the environment its clients need, a private root dir."""

    address: str
    env: dict[str, str]
    root: Path
    token: str
    head: subprocess.Popen

    # -------------------------------------------------------------- the ray CLI
    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAY_CLI), *args], env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )

    def submit(self, submission_id: str, working_dir: Path, entrypoint: list[str]) -> None:
        """``ray job submit --no-wait`` with the project's cluster/runtime_env.yaml (the CLI a user runs)."""
        args = ["job", "submit", "--address", self.address, "--submission-id", submission_id,
                "--working-dir", str(working_dir), "--runtime-env", str(RUNTIME_ENV), "--no-wait"]
        done = self.ray(*args, "--", *entrypoint)
        assert done.returncode == 0, f"ray job submit failed:\n{done.stdout}\n{done.stderr}"

    # -------------------------------------------------------- the Jobs REST API
    def _get(self, path: str, authenticated: bool = True) -> tuple[int, str]:
        request = urllib.request.Request(self.address + path)
        if authenticated:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def status(self, submission_id: str) -> str:
        code, body = self._get(f"/api/jobs/{submission_id}")
        assert code == 200, (code, body)
        return json.loads(body)["status"]

    def logs(self, submission_id: str) -> str:
        code, body = self._get(f"/api/jobs/{submission_id}/logs")
        return json.loads(body).get("logs", "") if code == 200 else f"<no logs: HTTP {code}>"

    def wait(self, submission_id: str, timeout: float, until=("SUCCEEDED", "FAILED", "STOPPED")) -> str:
        deadline = time.time() + timeout
        status = self.status(submission_id)
        while status not in until and time.time() < deadline:
            time.sleep(1.0)
            status = self.status(submission_id)
        return status


def _session_processes(session_id: int, marker: str) -> list[int]:
    """Pids in the head's session, or whose command line names this test's private directory."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) == session_id:
                found.append(pid)
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(pid)
        except (OSError, ProcessLookupError):
            continue
    return found


def _stop_head(head: subprocess.Popen, root: Path) -> None:
    """SIGTERM to ``ray start --block`` (it stops its Ray processes), then SIGKILL what is left, by pid."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline:
        left = _session_processes(head.pid, str(root))
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 (2 CPUs, dashboard, token auth), stopped at teardown whatever happened."""
    # A short private root: Ray's unix sockets live under --temp-dir and their paths must stay < 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="raynas-cl-", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        HOME=str(home),
        RAY_AUTH_MODE="token",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AIR_NEW_OUTPUT="0",
        PYTHONUNBUFFERED="1",
        # Jobs run `python ...`: make it this interpreter (the one with raynas installed).
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    generated = subprocess.run([str(RAY_CLI), "get-auth-token", "--generate"], env=env, capture_output=True,
                               text=True, timeout=60)
    token_file = home / ".ray" / "auth_token"
    assert token_file.exists(), generated.stdout + generated.stderr
    token = token_file.read_text().strip()

    gcs, dashboard, agent_http, agent_grpc, runtime_env, metrics, client, node_manager, object_manager = _free_ports(9)
    log = open(root / "head.log", "w")
    head = subprocess.Popen(
        [str(RAY_CLI), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
         f"--ray-client-server-port={client}", f"--node-manager-port={node_manager}",
         f"--object-manager-port={object_manager}", f"--temp-dir={root / 'ray'}", "--disable-usage-stats"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    instance = LocalCluster(f"http://127.0.0.1:{dashboard}", env, root, token, head)
    try:
        deadline = time.time() + 90
        while True:
            assert head.poll() is None, "ray start exited:\n" + (root / "head.log").read_text()[-4000:]
            try:
                code, _ = instance._get("/api/jobs/")
                if code == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the Jobs API did not come up:\n" + (root / "head.log").read_text()[-4000:]
            time.sleep(1.0)
        yield instance
    finally:
        _stop_head(head, root)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def working_dir(cluster, synthetic_nb201_csv) -> Path:
    """What `--working-dir` uploads: the benchmark table (the job reads it by a relative path)."""
    directory = cluster.root / "project"
    directory.mkdir()
    shutil.copy(synthetic_nb201_csv, directory / "synthetic_nb201.csv")
    return directory


def _search(*extra: str) -> list[str]:
    return ["python", "-m", "raynas.cli", "search", "--benchmark", "synthetic_nb201.csv",
            "--objective", "val_200", "--test-metric", "test_200", "--searcher", "regevo", *extra]


def _finished_trial_dirs(experiment: Path) -> int:
    """Trials whose last result says done (Tune writes result.json as results arrive, unlike its
    periodic experiment snapshots)."""
    count = 0
    for result in experiment.glob("TabularTrainable_*/result.json"):
        try:
            lines = result.read_text().splitlines()
            count += bool(lines) and json.loads(lines[-1]).get("done") is True
        except (OSError, json.JSONDecodeError):
            continue
    return count


def test_token_auth_is_on(cluster):
    code, _ = cluster._get("/api/jobs/", authenticated=False)
    assert code in (401, 403)


def test_submitted_search_succeeds_and_leaves_results(cluster, working_dir, capsys):
    store, name, total = cluster.root / "store", "job_search", 12
    cluster.submit("raynas-search", working_dir, _search(
        "--fidelities", "val_12:12", "--objective-epochs", "200", "--num-samples", str(total),
        "--max-concurrent", "2", "--grace-period", "12", "--reduction-factor", "2",
        "--storage", str(store), "--name", name, "--seed", "0"))
    status = cluster.wait("raynas-search", timeout=150)
    logs = cluster.logs("raynas-search")
    assert status == "SUCCEEDED", logs[-4000:]
    assert "best val_200" in logs
    # the same job seen through the CLI a user would use
    listed = cluster.ray("job", "status", "--address", cluster.address, "raynas-search")
    assert "succeeded" in (listed.stdout + listed.stderr).lower()

    experiment = store / name
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total and table["config/arch"].is_unique and table["trial_id"].is_unique
    assert set(table["training_iteration"]) <= {1, 2} and (table["training_iteration"] == 1).any()  # ASHA stopped some
    assert table["val_200"].notna().all()
    assert (experiment / "best_so_far.png").stat().st_size > 0
    spec = json.loads((experiment / "raynas.json").read_text())
    assert spec["benchmark"].endswith("synthetic_nb201.csv")  # read from the uploaded working dir

    # analysed where the results are, without the cluster
    from raynas.cli import main

    assert main(["analyze", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert f"trials: {total}" in out and "best val_200" in out


def test_gpu_request_without_gpus_fails_fast(cluster, working_dir):
    started = time.time()
    cluster.submit("raynas-gpu", working_dir, _search(
        "--num-samples", "2", "--gpus-per-trial", "1", "--storage", str(cluster.root / "store"), "--name", "gpu"))
    status = cluster.wait("raynas-gpu", timeout=90)
    logs = cluster.logs("raynas-gpu")
    assert status == "FAILED", logs[-3000:]
    assert "no node of the Ray cluster has that" in logs and "0 GPU" in logs, logs[-3000:]
    assert time.time() - started < 90


def test_stopped_job_resumes_without_losing_or_repeating_trials(cluster, working_dir):
    store, name, total = cluster.root / "store", "job_resume", 16
    experiment = store / name
    # ray job stop sends SIGTERM; raynas turns it into Tune's graceful stop (state snapshot), and
    # cluster/runtime_env.yaml raises the grace period before SIGKILL from Ray's default 3 s.
    cluster.submit("raynas-first", working_dir, _search(
        "--num-samples", str(total), "--max-concurrent", "2", "--scheduler", "none",
        # 4 s per trial: the 13+ trials still to run outlast `ray job stop`'s own start-up on a loaded
        # machine (at 2 s the job once finished before the stop reached it)
        "--seconds-per-epoch", "4.0", "--storage", str(store), "--name", name, "--seed", "3"))
    deadline = time.time() + 120
    while _finished_trial_dirs(experiment) < 3:
        assert cluster.status("raynas-first") in ("PENDING", "RUNNING"), cluster.logs("raynas-first")[-4000:]
        assert time.time() < deadline, cluster.logs("raynas-first")[-4000:]
        time.sleep(0.5)
    stopped = cluster.ray("job", "stop", "--address", cluster.address, "raynas-first", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert cluster.wait("raynas-first", timeout=90) == "STOPPED"
    first_logs = cluster.logs("raynas-first")
    assert "raynas search: SIGTERM received" in first_logs, first_logs[-4000:]  # raynas's handler, not Ray's

    before = {t: trial.get("status") for t, trial in newest_trials(experiment).items()}
    finished = sorted(t for t, s in before.items() if s == "TERMINATED")
    assert 3 <= len(finished) < total, before
    result_lines = {t: len((experiment / f"TabularTrainable_{t}" / "result.json").read_text().splitlines())
                    for t in finished}
    values = {t: json.loads((experiment / f"TabularTrainable_{t}" / "result.json").read_text().splitlines()[-1])
              ["val_200"] for t in finished}

    cluster.submit("raynas-resume", working_dir,
                   ["python", "-m", "raynas.cli", "search", "--resume", "--storage", str(store), "--name", name])
    status = cluster.wait("raynas-resume", timeout=150)
    logs = cluster.logs("raynas-resume")
    assert status == "SUCCEEDED", logs[-4000:]
    assert f"resuming {experiment}" in logs

    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total
    assert table["trial_id"].is_unique and table["config/arch"].is_unique
    assert table["val_200"].notna().all()
    by_id = table.set_index("trial_id")
    for trial in finished:  # not lost, not trained again
        assert by_id.loc[trial, "val_200"] == pytest.approx(values[trial])
        lines = (experiment / f"TabularTrainable_{trial}" / "result.json").read_text().splitlines()
        assert len(lines) == result_lines[trial], trial

    # the searcher went on from its saved state: it knows every trial, before and after the stop
    from raynas.benchmarks import TabularBenchmark
    from raynas.searchers import make_searcher

    bench = TabularBenchmark.from_csv(working_dir / "synthetic_nb201.csv", "val_200")
    searcher = make_searcher("regevo", bench.space)
    searcher.restore(str(sorted(experiment.glob("searcher-state-*.pkl"))[-1]))
    assert searcher.search.num_evaluated == total and not searcher.search.pending

"""Nothing lost: ``raynas search`` on a real two-node Ray cluster survives losing a node or a trial's actor.

A head (0 CPUs: trials cannot run there) and a worker node (2 CPUs), both ``ray start --block`` on
127.0.0.2 (loopback, see ``LOOPBACK``) with private ``--temp-dir``s, free ports, token authentication
(private HOME) and a fast node-failure detector (``RAY_health_check_*``). ``raynas search`` runs as a
subprocess driver with ``RAY_ADDRESS=127.0.0.2:<gcs port>``; its trials last 3 s (``--seconds-per-epoch``).

* Node loss: the worker node's raylet is killed with SIGKILL mid-search, the node's other processes
  go with it, then a new worker node joins. The trials that were running fail once and are retried
  (``FailureConfig(max_failures=1)``, set by ``raynas search``) on the new node.
* Actor loss: one trial actor's worker process (titled ``ray::ResourceTrainable.train``:
  ``tune.with_resources`` wraps TabularTrainable) is killed with SIGKILL mid-trial; its trial is retried.

In both, the search must finish (exit 0) with every trial accounted for: ``num_samples`` rows, unique
trial ids and architectures, every objective value present, the searcher knowing each trial once.

Teardown never runs ``ray stop`` (it matches every Ray process on the machine by name): each node's
``ray start --block`` is sent SIGTERM, then anything left in its process session, or naming this
test's private directory, is killed by pid.

Ray's own gRPC servers (GCS, raylets, workers) and the dashboard agents' HTTP/metrics ports still listen on
all interfaces whatever the node address (Ray 2.60 has no flag for that); every address the nodes and the
driver advertise and connect to is 127.0.0.2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster.test_ray_job import RAY_CLI, _free_ports, _session_processes, _stop_head
from tests.cluster.tune_state import newest_trials

pytestmark = pytest.mark.skipif(not RAY_CLI.exists(), reason=f"the ray CLI is not installed at {RAY_CLI}")

TOTAL = 10
#: Every node's address. Not 127.0.0.1: on Linux `ray start` and `ray.init` replace 127.0.0.1 (and "localhost")
#: by the machine's outbound address (ray._private.services.resolve_ip_for_localhost); the rest of 127.0.0.0/8
#: is loopback too and is left alone.
LOOPBACK = "127.0.0.2"
#: the process title of a trial actor mid-trial (``tune.with_resources`` names the actor class ResourceTrainable)
TRAINING = "Trainable.train"


def _node_ports() -> list[str]:
    node_manager, object_manager, metrics, agent_http, agent_grpc, runtime_env = _free_ports(6)
    return [f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--metrics-export-port={metrics}", f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}"]


class TwoNodes:
    """A head without CPUs and a replaceable 2-CPU worker node, both addressed on loopback only."""

    def __init__(self) -> None:
        # short: Ray's unix sockets live under --temp-dir and their paths must stay < 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix="raynas-ft-", dir="/tmp"))
        home = self.root / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HOME=str(home), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0", RAY_AIR_NEW_OUTPUT="0",
            PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # a dead node is declared dead in ~3 s instead of ~30 s
            RAY_health_check_initial_delay_ms="1000", RAY_health_check_period_ms="1000",
            RAY_health_check_timeout_ms="1000", RAY_health_check_failure_threshold="3",
        )
        self.env = env
        generated = subprocess.run([str(RAY_CLI), "get-auth-token", "--generate"], env=env, capture_output=True,
                                   text=True, timeout=60)
        assert (home / ".ray" / "auth_token").exists(), generated.stdout + generated.stderr
        (self.gcs_port,) = _free_ports(1)
        self.address = f"{LOOPBACK}:{self.gcs_port}"
        self.nodes: list[tuple[subprocess.Popen, Path]] = []
        self.head = self._start("head", ["--head", f"--port={self.gcs_port}", "--num-cpus=0",
                                         '--resources={"head": 1}', "--include-dashboard=false",
                                         f"--ray-client-server-port={_free_ports(1)[0]}"])
        self.worker: subprocess.Popen | None = None
        self.workers_started = 0

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        process = subprocess.Popen(
            [str(RAY_CLI), "start", "--block", f"--node-ip-address={LOOPBACK}", "--num-gpus=0", *args,
             *_node_ports(), f"--temp-dir={self.root / name}", "--disable-usage-stats"],
            env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append((process, self.root / name))
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start_worker(self) -> None:
        self.workers_started += 1
        name = f"w{self.workers_started}"
        self.worker = self._start(name, [f"--address={self.address}", "--num-cpus=2",
                                         '--resources={"worker_node": 2}'])
        self.worker_dir = self.root / name
        deadline = time.time() + 120
        while "Ray runtime started" not in self.log(name):
            assert self.worker.poll() is None, f"{name} exited:\n{self.log(name)}"
            assert self.head.poll() is None, f"head exited:\n{self.log('head')}"
            assert time.time() < deadline, f"{name} did not join:\n{self.log(name)}"
            time.sleep(0.5)

    def worker_processes(self, title: str) -> list[int]:
        """Pids of the current worker node's processes whose command line contains ``title``."""
        assert self.worker is not None
        found = []
        for pid in _session_processes(self.worker.pid, "\0no-marker\0"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if title.encode() in handle.read():
                        found.append(pid)
            except OSError:
                continue
        return found

    def kill_worker_node(self) -> None:
        """A lost machine: SIGKILL the worker node's raylet, then every other process of the node, by pid."""
        assert self.worker is not None
        raylets = [pid for pid in self.worker_processes("raylet") if _exe_name(pid) == "raylet"]
        assert len(raylets) == 1, raylets
        os.kill(raylets[0], signal.SIGKILL)
        deadline = time.time() + 15
        while time.time() < deadline:
            left = _session_processes(self.worker.pid, str(self.worker_dir))
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.3)
        self.worker.wait(timeout=10)
        self.worker = None

    def close(self) -> None:
        for process, _ in reversed(self.nodes):
            _stop_head(process, self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def _exe_name(pid: int) -> str:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return ""


@pytest.fixture(scope="module")
def two_nodes():
    cluster = TwoNodes()
    try:
        cluster.start_worker()
        yield cluster
    finally:
        cluster.close()


def _finished(experiment: Path) -> int:
    count = 0
    for result in experiment.glob("TabularTrainable_*/result.json"):
        try:
            lines = result.read_text().splitlines()
            count += bool(lines) and json.loads(lines[-1]).get("done") is True
        except (OSError, json.JSONDecodeError):
            continue
    return count


def _start_search(cluster: TwoNodes, table: Path, name: str, seed: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "raynas.cli", "search", "--benchmark", str(table), "--objective", "val_200",
               "--test-metric", "test_200", "--searcher", "regevo", "--scheduler", "none",
               "--num-samples", str(TOTAL), "--max-concurrent", "2", "--seconds-per-epoch", "3.0",
               "--storage", str(cluster.root / "store"), "--name", name, "--seed", str(seed)]
    log = open(cluster.root / f"{name}.driver.log", "w")
    return subprocess.Popen(command, env={**cluster.env, "RAY_ADDRESS": cluster.address}, cwd=cluster.root,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_running(cluster: TwoNodes, driver: subprocess.Popen, experiment: Path, name: str) -> None:
    """Until 2 trials have finished and 2 trial actors are mid-trial on the worker node."""
    deadline = time.time() + 180
    while True:
        assert driver.poll() is None, cluster.log(f"{name}.driver")
        assert time.time() < deadline, cluster.log(f"{name}.driver")
        if _finished(experiment) >= 2 and len(cluster.worker_processes(TRAINING)) >= 2:
            started = [t for t in experiment.glob("TabularTrainable_*") if not (t / "result.json").exists()
                       or not (t / "result.json").read_text().strip()]
            if started:
                return
        time.sleep(0.3)


def _assert_nothing_lost(cluster: TwoNodes, driver: subprocess.Popen, experiment: Path, name: str,
                         table: Path) -> dict[str, dict]:
    try:
        status = driver.wait(timeout=240)
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail("the search did not finish:\n" + cluster.log(f"{name}.driver"))
    log = cluster.log(f"{name}.driver")
    assert status == 0, log
    results = pd.read_csv(experiment / "results.csv")
    assert len(results) == TOTAL, results
    assert results["trial_id"].is_unique and results["config/arch"].is_unique
    assert results["val_200"].notna().all()
    trials = newest_trials(experiment)
    assert len(trials) == TOTAL and {t["status"] for t in trials.values()} == {"TERMINATED"}, trials

    from raynas.benchmarks import TabularBenchmark
    from raynas.searchers import make_searcher

    searcher = make_searcher("regevo", TabularBenchmark.from_csv(table, "val_200").space)
    searcher.restore(str(sorted(experiment.glob("searcher-state-*.pkl"))[-1]))
    assert searcher.search.num_evaluated == TOTAL and not searcher.search.pending
    assert not searcher.search.failed
    return trials


@pytest.mark.slow  # ~70 s (plus ~15 s to start the two nodes)
def test_search_survives_losing_the_worker_node(two_nodes, synthetic_nb201_csv):
    name = "node_loss"
    experiment = two_nodes.root / "store" / name
    driver = _start_search(two_nodes, synthetic_nb201_csv, name, seed=5)
    try:
        _wait_running(two_nodes, driver, experiment, name)
        two_nodes.kill_worker_node()
        time.sleep(3.0)  # the search waits with no CPU anywhere
        assert driver.poll() is None, two_nodes.log(f"{name}.driver")
        two_nodes.start_worker()
        trials = _assert_nothing_lost(two_nodes, driver, experiment, name, synthetic_nb201_csv)
    finally:
        if driver.poll() is None:
            driver.kill()
    retried = {t: d.get("num_failures") for t, d in trials.items() if d.get("num_failures")}
    assert retried and set(retried.values()) == {1}, {t: d.get("num_failures") for t, d in trials.items()}


def test_search_survives_a_killed_trial_actor(two_nodes, synthetic_nb201_csv):
    name = "actor_loss"
    experiment = two_nodes.root / "store" / name
    driver = _start_search(two_nodes, synthetic_nb201_csv, name, seed=6)
    try:
        _wait_running(two_nodes, driver, experiment, name)
        os.kill(two_nodes.worker_processes(TRAINING)[0], signal.SIGKILL)
        trials = _assert_nothing_lost(two_nodes, driver, experiment, name, synthetic_nb201_csv)
    finally:
        if driver.poll() is None:
            driver.kill()
    retried = {t: d.get("num_failures") for t, d in trials.items() if d.get("num_failures")}
    assert list(retried.values()) == [1], {t: d.get("num_failures") for t, d in trials.items()}

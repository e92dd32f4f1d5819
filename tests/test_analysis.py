"""raynas.analysis: the trial table, plots and report.html, down to a real search rendered in headless Chromium."""

import base64
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raynas.analysis import (
    best_row, format_summary, full_fidelity, graph_layout, pareto_front, plot_architecture, trial_table,
    write_report,
)
from raynas.benchmarks import Fidelity, TabularBenchmark
from raynas.spaces import NB201Space

SPACE = NB201Space()


def frame():
    return pd.DataFrame({
        "trial_id": ["c", "a", "b", "d"],
        "config/suggestion": [2, 0, 1, 3],
        "acc": [0.5, 0.7, float("nan"), 0.9],
        "arch_str": ["x", "y", "z", "w"],
        "timestamp": [3, 1, 2, 4],
    })


def test_trial_table_orders_by_suggestion_and_tracks_best():
    table = trial_table(frame(), "acc", "max")
    assert table["trial_id"].tolist() == ["a", "b", "c", "d"]
    assert table["trial"].tolist() == [1, 2, 3, 4]
    assert table["best_so_far"].tolist() == [0.7, 0.7, 0.7, 0.9]
    low = trial_table(frame(), "acc", "min")
    assert low["best_so_far"].tolist() == [0.7, 0.7, 0.5, 0.5]


def test_best_row_ignores_missing_values():
    table = trial_table(frame(), "acc")
    assert best_row(table, "acc")["trial_id"] == "d"
    empty = trial_table(frame().assign(acc=math.nan), "acc")
    assert best_row(empty, "acc") is None


def test_unknown_metric_is_named():
    with pytest.raises(KeyError, match="'loss' not in results"):
        trial_table(frame(), "loss")


def test_write_report_files_and_summary(tmp_path):
    summary = write_report(frame(), "acc", "max", tmp_path, title="t")
    assert (tmp_path / "results.csv").exists() and (tmp_path / "best_so_far.png").stat().st_size > 1000
    assert summary["trials"] == 4 and summary["with_metric"] == 3
    assert summary["best"]["acc"] == 0.9 and summary["best"]["arch_str"] == "w"
    text = format_summary(summary, "acc")
    assert "best acc: 0.9" in text and "best architecture: w" in text
    reread = pd.read_csv(tmp_path / "results.csv")
    assert reread["best_so_far"].iloc[-1] == 0.9


# ---------------------------------------------------------------- full fidelity, Pareto front, plots (no Ray)


def tune_frame(bench: TabularBenchmark, archs, stopped=()) -> pd.DataFrame:
    """What ``ResultGrid.get_dataframe()`` holds after a tabular search with one 12-epoch rung (ASHA)."""
    rows = []
    for k, arch in enumerate(archs):
        early = k in stopped
        column = "val_12" if early else bench.objective
        row = {
            "trial_id": f"t{k:02d}", "config/suggestion": k, "config/arch": arch.to_json(),
            bench.objective: bench.value(arch, column), "fidelity": column, "epochs": 12.0 if early else 200.0,
            "training_iteration": 1 if early else 2, "arch_str": SPACE.describe(arch), "timestamp": 100 + k,
            "time_total_s": 0.01, **{c: v for c, v in bench.numeric_row(arch).items()
                                     if c not in (bench.objective, "test_200")},
        }
        if not early:
            row["test_200"] = bench.value(arch, "test_200")
        rows.append(row)
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # Tune's order is not the suggestion order


@pytest.fixture(scope="module")
def small_bench():
    """A 200-row NB201 table (synthetic values) with params / FLOPs columns and a 12-epoch rung."""
    from tests.conftest import synthetic_nb201_frame

    frame = synthetic_nb201_frame(limit=200)
    frame["params_M"] = 0.1 + 0.01 * (frame.index % 37)
    frame["flops_M"] = 10.0 + (frame.index % 23)
    archs = [SPACE.parse(text) for text in frame["arch_str"]]
    return TabularBenchmark(frame, SPACE, archs, "val_200", test_metric="test_200",
                            fidelities=[Fidelity("val_12", 12)], objective_epochs=200)


def test_stopped_trials_never_become_the_best(small_bench):
    """A stopped trial's lower-fidelity value, even the largest number reported, is marked and never counted."""
    archs = small_bench.architectures[:12]
    frame = tune_frame(small_bench, archs, stopped={3, 7})
    frame.loc[frame["trial_id"] == "t03", "val_200"] = 1e6  # a proxy value far above every real one
    table = trial_table(frame, "val_200", "max")
    assert table["trial_id"].tolist() == [f"t{k:02d}" for k in range(12)]
    assert table["full_fidelity"].tolist() == [k not in (3, 7) for k in range(12)]
    full_values = table["val_200"].where(table["full_fidelity"])
    assert table["best_so_far"].tolist() == full_values.cummax().ffill().tolist()
    assert table["best_so_far"].max() < 1e6
    assert best_row(table, "val_200")["trial_id"] != "t03"
    # without a fidelity column the iteration budget decides
    no_fidelity = frame.drop(columns=["fidelity"])
    assert full_fidelity(no_fidelity, "val_200").sum() == 10
    assert full_fidelity(no_fidelity, "val_200", max_iteration=3).sum() == 0


def test_pareto_front():
    costs = [1.0, 2.0, 2.0, 3.0, 4.0, float("nan"), 0.5]
    values = [10.0, 12.0, 11.0, 11.5, 15.0, 99.0, 9.0]
    assert pareto_front(costs, values, "max").tolist() == [True, True, False, False, True, False, True]
    # minimising: lower values are better; the cheapest point with the lowest value dominates all but itself
    assert pareto_front(costs, values, "min").tolist() == [False, False, False, False, False, False, True]
    assert pareto_front([1.0, 1.0], [5.0, 5.0], "max").tolist() == [True, False]  # ties: one point kept


def test_graph_layout_is_layered_and_wraps_long_chains():
    import networkx as nx

    graph = SPACE.to_graph(SPACE.make(["nor_conv_3x3"] * 6))
    pos = graph_layout(graph)
    assert all(pos[u][0] < pos[v][0] for u, v in graph.edges)  # every edge points right
    assert len(set(pos.values())) == graph.number_of_nodes()  # no two boxes on one spot
    chain = nx.path_graph(40, create_using=nx.DiGraph)
    wrapped = graph_layout(chain)
    assert max(x for x, _ in wrapped.values()) < 12 and len({y for _, y in wrapped.values()}) >= 3


def test_write_report_of_a_tune_shaped_frame(small_bench, tmp_path):
    """Regret against the table's optimum, Pareto plots, the best architecture drawn, top-10 table, all in one page."""
    archs = small_bench.architectures[:30]
    frame = tune_frame(small_bench, archs, stopped={1, 4, 9, 20})
    summary = write_report(frame, "val_200", "max", tmp_path, title="synthetic run", benchmark=small_bench)
    for name in ("results.csv", "best_so_far.png", "pareto.png", "best_arch.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert summary["trials"] == 30 and summary["full_fidelity"] == 26 and summary["stopped"] == 4
    best_value = max(small_bench.value(a) for k, a in enumerate(archs) if k not in (1, 4, 9, 20))
    assert summary["best"]["val_200"] == pytest.approx(best_value)
    assert summary["optimum"] == pytest.approx(small_bench.optimum[1])
    assert summary["regret"] == pytest.approx(small_bench.optimum[1] - best_value)
    assert set(summary["plots"]) == {"progress", "pareto", "architecture"}
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert 'src="' not in page.replace('src="data:image/png;base64,', "")  # nothing outside the file
    rows = re.findall(r"<tr(?: class=\"stopped\")?><td>(\d+)</td>", page)
    assert rows == [str(k) for k in range(1, 11)]
    best_arch = SPACE.describe(archs[int(summary["best_trial"]) - 1])
    assert best_arch.replace("+", "+<wbr>") in page  # readable NB201 string, not JSON
    for column in ("params_M", "flops_M", "test_200"):
        assert column in page
    text = format_summary(summary, "val_200")
    assert "4 stopped before it" in text and f"report: {tmp_path / 'report.html'}" in text


def test_write_report_reads_the_table_from_raynas_json(small_bench, tmp_path):
    """After ``raynas search`` the directory holds raynas.json: the table named there gives the optimum."""
    import json

    table_path = tmp_path / "table.csv"
    small_bench.frame.to_csv(table_path, index=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "raynas.json").write_text(json.dumps({
        "searcher": "regevo", "space": "nb201", "benchmark": str(table_path), "objective": "val_200",
        "test_metric": "test_200", "fidelities": "val_12:12", "objective_epochs": 200, "mode": "max",
        "name": "run", "kind": "search"}))
    frame = tune_frame(small_bench, small_bench.architectures[:10], stopped={2})
    summary = write_report(frame, "val_200", "max", run_dir)
    assert summary["optimum"] == pytest.approx(small_bench.optimum[1]) and summary["regret"] is not None
    (run_dir / "raynas.json").write_text(json.dumps({"benchmark": str(tmp_path / "moved.csv"), "name": "run"}))
    summary = write_report(frame, "val_200", "max", run_dir)
    assert summary["optimum"] is None and "not found" in summary["notes"][0]
    assert "not found" in (run_dir / "report.html").read_text()


def test_plot_architecture_of_every_drawable_space(tmp_path):
    from raynas.registry import SPACES, make_space

    for name in SPACES:
        space = make_space(name)
        arch = space.sample(np.random.default_rng(0))
        path = plot_architecture(space, arch, tmp_path / f"{name}.png", title=name)
        assert Path(path).stat().st_size > 3000, name


# ---------------------------------------------------------------- a real search on local Ray, rendered in Chromium
def _search(storage: Path, table: Path, searcher: str, num_samples: int):
    from raynas.searchers.experiment import SearchSpec, run_search

    spec = SearchSpec(searcher=searcher, benchmark=str(table), objective="cifar10valid_val_acc_200ep",
                      test_metric="cifar10_test_acc_200ep", fidelities="cifar10valid_val_acc_12ep:12",
                      objective_epochs=200, num_samples=num_samples, max_concurrent=4, scheduler="asha",
                      grace_period=12, reduction_factor=2, seed=0, storage=str(storage), name=f"{searcher}-run")
    results, summary = run_search(spec, verbose=False)
    return Path(spec.experiment_dir), results, summary


@pytest.fixture(scope="module")
def searched(ray_session, nb201_table_path, tmp_path_factory):
    """Two small ASHA searches on the real NB201 table: BONAS (20 trials) and random (10 trials)."""
    storage = tmp_path_factory.mktemp("searches")
    return {name: _search(storage, nb201_table_path, name, n) for name, n in (("bonas", 20), ("random", 10))}


def test_report_of_a_real_tabular_search(searched, nb201_table_path):
    directory, results, summary = searched["bonas"]
    table = pd.read_csv(directory / "results.csv")
    assert len(table) == 20 and summary["trials"] == 20
    # ASHA stopped some trials at the 12-epoch rung: marked, and never the best
    assert (~table["full_fidelity"]).sum() == summary["stopped"] > 0
    full = table["cifar10valid_val_acc_200ep"].where(table["full_fidelity"])
    assert table["best_so_far"].tolist() == pytest.approx(full.cummax().ffill().tolist(), nan_ok=True)
    assert summary["optimum"] == pytest.approx(91.57)
    assert summary["regret"] == pytest.approx(91.57 - full.max())
    # the tabular trainable's every numeric column reached the results: params and FLOPs, so a Pareto plot
    assert {"params_M_cifar10", "flops_M_cifar10"} <= set(table.columns)
    assert set(summary["plots"]) == {"progress", "pareto", "architecture"}
    page = (directory / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 3
    assert "|nor_conv" in page or "|skip_connect" in page or "|avg_pool" in page or "|none" in page
    # against the random cells it began with: BONAS's initial design (10), those ASHA let finish
    randoms = summary["random_cells"]
    first = table[table["trial"] <= 10]
    assert randoms["design"] == 10 and randoms["full"] == first["full_fidelity"].sum() > 0
    assert randoms["median"] == pytest.approx(full[first.index].median())
    assert summary["above_random_median"] == pytest.approx(full.max() - randoms["median"])
    assert "against the median random cell" in page and "against random cells" in page
    assert len(summary["best_drawing"]) == 3 and summary["best_drawing"][0].startswith("node1 = ")


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.loaded = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src", ""))
        if tag == "body" and "data-images" in attrs:
            self.loaded = attrs["data-images"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium (Debian: apt-get install -y chromium; scripts/setup.sh does it as root)")


def _render(page: Path, tmp_path: Path) -> tuple[_Images, Path]:
    """Load ``page`` in headless Chromium: the DOM after load (with each image's decoded size) and a screenshot."""
    browser = _chromium()
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", (
        '<script>window.addEventListener("load", () => document.body.setAttribute("data-images", '
        '[...document.images].map(i => (i.complete ? i.naturalWidth : 0) + "x" + i.naturalHeight).join(",")));'
        "</script></body>")))
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Images()
    parsed.feed(dom.stdout)
    shot = tmp_path / f"{page.stem}.png"
    done = subprocess.run([browser, *flags, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    return parsed, shot


def test_report_renders_in_headless_chromium(searched, tmp_path):
    """The page loads with every image decoded (no broken or external images) and draws a non-trivial screenshot."""
    directory, _, _ = searched["bonas"]
    parsed, shot = _render(directory / "report.html", tmp_path)
    assert len(parsed.sources) == 3 and all(s.startswith("data:image/png;base64,") for s in parsed.sources)
    sizes = [tuple(int(v) for v in size.split("x")) for size in parsed.loaded.split(",")]
    assert len(sizes) == 3 and all(w > 300 and h > 200 for w, h in sizes), parsed.loaded
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        colours = image.convert("RGB").resize((120, 300)).getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 50  # plots and text, not a blank page
    assert shot.stat().st_size > 50_000


def test_cli_analyze_overlays_several_directories(searched, tmp_path, capsys):
    from raynas.cli import main

    first, second = searched["bonas"][0], searched["random"][0]
    (first / "report.html").unlink()
    assert main(["analyze", str(first), str(second), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("experiment: ") == 2 and "comparison of 2 runs" in printed
    assert (first / "report.html").exists() and (second / "report.html").exists()
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "bonas on bonas-run" in page and "random on random-run" in page
    parsed, _ = _render(tmp_path / "cmp" / "comparison.html", tmp_path)
    assert len(parsed.sources) == 2 and all(int(s.split("x")[0]) > 300 for s in parsed.loaded.split(","))


def test_main_job_report_renders_in_headless_chromium(ray_session, tmp_path):
    """The main job's settings (BONAS, real training on digits, ASHA), fewer and shorter trials: its report
    has the progress plot and the best cell drawn, every image decoded in Chromium."""
    from raynas.searchers.experiment import SearchSpec, run_search

    spec = SearchSpec(num_samples=4, epochs=3, max_concurrent=2, storage=str(tmp_path / "store"), name="main")
    _, summary = run_search(spec, verbose=False)
    assert spec.searcher == "bonas" and summary["trials"] == 4
    assert "progress" in summary["plots"] and "architecture" in summary["plots"]
    assert summary["random_cells"]["design"] == 10 and summary["best_drawing"][0].startswith("node1 = ")
    parsed, _ = _render(Path(spec.experiment_dir) / "report.html", tmp_path)
    assert len(parsed.sources) == len(summary["plots"]) and all(s.startswith("data:image/png;base64,")
                                                                 for s in parsed.sources)
    sizes = [tuple(int(v) for v in size.split("x")) for size in parsed.loaded.split(",")]
    assert all(w > 300 and h > 200 for w, h in sizes), parsed.loaded

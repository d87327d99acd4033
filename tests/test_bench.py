"""Smoke runs of the benchmarks on tiny sets: they run end to end and end in a JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_bench(*args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_quality_benchmark_smoke(data_root: Path, tmp_path: Path) -> None:
    summary = run_bench(
        "bench/quality.py", "--data", str(data_root), "--limit", "8", "--model", "efficientnet-lite0",
        "--model-cache", str(tmp_path),
    )  # fmt: skip
    assert summary["same_product"]["queries"] == 8
    assert 0 <= summary["same_product"]["crop (default)"]["photo->catalog"]["R@1"] <= 1
    assert summary["category"]["clothing photos"]["n"] == 8
    assert summary["detection"]["scenes"] == 8


def test_first_pass_benchmark_smoke(data_root: Path, tmp_path: Path) -> None:
    summary = run_bench(
        "bench/first_pass.py", "--data", str(data_root), "--limit", "8", "--model", "efficientnet-lite0",
        "--model-cache", str(tmp_path), "--sizes", "160",
    )  # fmt: skip
    today, cheaper = (
        summary["today: two float passes at the model's size"],
        summary["first pass 160 px float, second float"],
    )
    assert summary["queries"] == 8 and 0 <= today["catalog"] <= 1 and 0 <= cheaper["catalog"] <= 1
    assert 0 < cheaper["box IoU with today's"] <= 1 and cheaper["vision ms"] > 0


def test_keyword_benchmark_smoke(data_root: Path) -> None:
    summary = run_bench("bench/keywords.py", "--data", str(data_root), "--scale", "3000")
    assert summary["quality"]["tongkuan"]["ndcg@10"] > summary["quality"]["LIKE"]["ndcg@10"]
    assert summary["speed"]["titles"] == 3000


def test_ablation_benchmark_smoke(data_root: Path, tmp_path: Path) -> None:
    summary = run_bench(
        "bench/ablation.py", "--data", str(data_root), "--limit", "8", "--model", "efficientnet-lite0",
        "--model-cache", str(tmp_path),
    )  # fmt: skip
    assert summary["queries"] == 8
    assert all(0 <= r["photo->catalog"]["R@1"] <= 1 for r in summary["results"].values())


def test_perf_benchmark_smoke(data_root: Path, tmp_path: Path) -> None:
    # the baseline is the service at a commit, checked out from git (the last one here)
    against = ["--against", "HEAD"] if (REPO / ".git").exists() else []
    summary = run_bench(
        "bench/perf.py", "--data", str(data_root), "--work", str(tmp_path), "--sizes", "300",
        "--index-sizes", "3000", "--queries", "5", "--ingest", "20", "--seconds", "1", *against,
    )  # fmt: skip
    service = summary["service at 300 images"]
    assert service["catalog images"] == 300 and service["sequential queries"]["errors"] == 0
    assert all(not run["errors"] for run in service["load"])
    baseline = service["baseline: the service at HEAD" if against else "baseline: no whitening, no inset search"]
    assert baseline["sequential queries"]["errors"] == 0 and all(not run["errors"] for run in baseline["load"])
    assert service["sequential p50 / one forward pass"] > 1 and service["against the baseline"]["p50"] > 0
    assert summary["index at 3000"]["HNSW32"]["recall@10"] > 0.8


def test_thirty_seconds_of_32_clients_gives_no_errors_and_flat_memory(data_root: Path, tmp_path: Path) -> None:
    summary = run_bench(
        "bench/soak.py", "--data", str(data_root), "--seconds", "30", "--clients", "32",
        "--model", "efficientnet-lite0", "--work", str(tmp_path),
    )  # fmt: skip
    print(f"soak: {summary}")
    assert summary["requests"] > 100
    assert summary["errors_other_than_429"] == 0
    assert summary["rss_growth"] <= 0.10


def test_no_benchmark_script_shadows_a_standard_module() -> None:
    # a script's folder comes first on sys.path: bench/profile.py once made torch's
    # `import cProfile` load it instead of the standard `profile`, and bench/tune.py failed
    scripts = {path.stem for path in (REPO / "bench").glob("*.py")}
    assert not scripts & set(sys.stdlib_module_names)

"""Smoke runs of the benchmarks on tiny sets: they run end to end and end in a JSON summary.
And what they stand on: the service's public forms and `tongkuan.bench`, never the tests.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tongkuan.bench
from tests.conftest import REPO
from tongkuan.bench import Box, OnnxEncoder, PoolingVision, resolve_model

# what a benchmark may import of the package: the client, and the support for benchmarks
PUBLIC = {"tongkuan.bench", "tongkuan.client"}


def run_bench(*args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_quality_benchmark_runs_against_an_imported_model(data_root: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tests.utils.tiny_models import tiny_hf_onnx
    from tongkuan.cli import main

    data_dir = tmp_path / "data"
    imported = CliRunner().invoke(
        main, ["models", "import", str(tiny_hf_onnx(tmp_path / "tiny")), "--name", "tiny", "--data-dir", str(data_dir)]
    )
    assert imported.exit_code == 0, imported.output
    summary = run_bench(
        "bench/quality.py", "--data", str(data_root), "--limit", "3", "--model", "tiny",
        "--model-cache", str(data_dir), "--only", "same_product,detection",
    )  # fmt: skip
    assert summary["model"] == "tiny" and summary["same_product"]["queries"] == 3
    assert summary["detection"]["scenes"] == 3  # the shipped model finds the subjects for it


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
    assert service["sequential p50 / two bare passes"] > 0.5 and service["against the baseline"]["p50"] > 0
    shares = service["sequential stages, share of two bare passes"]
    assert shares["inference"] > 0 and {"queue", "vision", "catalog"} <= set(shares)
    assert all(run["QPS / two-bare-pass rate"] > 0 for run in service["load"])
    options = summary["session options"]
    assert next(iter(options.values()))["against the service's"] == 1.0 and len(options) == 6
    assert summary["index at 3000"]["HNSW32"]["recall@10"] > 0.8


def test_embedders_benchmark_smoke(data_root: Path, model_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")  # the benchmark's own requirement, not the service's
    summary = run_bench(
        "bench/embedders.py", "--data", str(data_root), "--only", "dinov2-s14", "--runs", "2", "--batch", "2",
        "--batch-runs", "1", "--pictures", "2", "--calibration", "16", "--cache", str(tmp_path),
        "--model-cache", str(model_cache),
    )  # fmt: skip
    lite2, dino = summary["models"]["efficientnet-lite2"], summary["models"]["dinov2-s14"]
    assert set(summary["models"]) == {"efficientnet-lite2", "dinov2-s14"}
    assert lite2["x_lite2"]["float"]["batch 1"] == 1.0
    assert dino["dim"] == 384 and 20 < dino["params_m"] < 25 and dino["mb"]["int8"] < dino["mb"]["float"]
    assert all(ms > 0 for by in dino["ms_per_picture"].values() for ms in by.values())
    assert dino["int8_cosine"]["mean"] > 0.9


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


def reaches_past_the_surface(script: Path) -> list[str]:
    """What a benchmark does that it must not: import the tests, a module of the package other
    than its public ones, a name `tongkuan.bench` does not offer, or change `sys.path`."""
    found = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "tongkuan.bench":
                found += [
                    f"{alias.name} is not offered" for alias in node.names if alias.name not in tongkuan.bench.__all__
                ]
        else:
            modules = []
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path":
                found.append(f"line {node.lineno} touches sys.path")
        for module in modules:
            top = module.split(".")[0]
            if top in ("tests", "bench") or (top == "tongkuan" and module not in PUBLIC):
                found.append(f"line {node.lineno} imports {module}")
    return found


def test_benchmarks_stand_on_the_public_surface_only() -> None:
    # a benchmark runs with its own folder first on sys.path, so one may import a sibling
    # (`from perf import ...`); the repository itself is never on it
    scripts = sorted((REPO / "bench").glob("*.py"))
    assert scripts
    assert {script.name: reaches_past_the_surface(script) for script in scripts} == {s.name: [] for s in scripts}


def test_the_check_catches_the_tests_a_deep_import_and_the_path(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(
        "import sys\nsys.path.insert(0, '..')\nfrom tests.utils.data import read_rows\n"
        "from tongkuan.vision.pipeline import Vision\nfrom tongkuan.bench import nothing_such\n"
    )
    assert sorted(reaches_past_the_surface(script)) == [
        "line 2 touches sys.path",
        "line 3 imports tests.utils.data",
        "line 4 imports tongkuan.vision.pipeline",
        "nothing_such is not offered",
    ]


def test_every_name_the_support_for_benchmarks_offers_exists() -> None:
    names = tongkuan.bench.__all__
    assert len(names) == len(set(names))
    assert [name for name in names if getattr(tongkuan.bench, name, None) is None] == []


def test_a_pooling_vision_embeds_a_region_from_the_one_inference(data_root: Path, model_cache: Path) -> None:
    encoder = OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1)
    photo = Image.open(
        data_root / "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"
    )
    photo = photo.convert("RGB")
    whole = encoder.run([photo]).embeddings[0]
    region = Box(44, 190, 54, 272)
    calls: list[int] = []
    original = encoder.run

    def counted(images: list[Image.Image]) -> object:
        calls.append(len(images))
        return original(images)

    encoder.run = counted  # type: ignore[method-assign,assignment]
    pooled = PoolingVision(encoder, pool_above=0.0).describe([photo], regions=[region])[0]
    assert pooled.searched == region and calls == [1]
    assert abs(float(np.linalg.norm(pooled.embedding)) - 1.0) < 1e-5
    assert not np.allclose(pooled.embedding, whole)
    cropped = PoolingVision(encoder).describe([photo], regions=[region])[0]  # none: cropped, a second run
    assert calls == [1, 1, 1] and not np.allclose(cropped.embedding, pooled.embedding)

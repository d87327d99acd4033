"""`tongkuan models pull` against a hub on loopback (HF_ENDPOINT) serving tiny random-weight
models built here: pulled, listed, searched with and switched back; and a missing repository
or revision, a repository without a model, a corrupt file, a cut download, a gated model and
offline mode each answered in one line, with nothing half-imported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.models.test_tuning import MODEL, small_catalog, vectors
from tests.utils.fake_hub import FakeHub
from tests.utils.tiny_models import tiny_hf_onnx, tiny_immich
from tongkuan.cli import main


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as served:
        served.add("tiny/dinov2-tiny", tiny_hf_onnx(tmp_path / "dinov2"))
        served.add("tiny/dinov2-tiny", tiny_hf_onnx(tmp_path / "dinov2-v2", dim=12, seed=5), revision="v2")
        served.add("immich-tiny/ViT-Tiny__test", tiny_immich(tmp_path / "immich"))
        (tmp_path / "empty" / "docs").mkdir(parents=True)
        (tmp_path / "empty" / "README.md").write_text("no model here")
        served.add("tiny/no-model", tmp_path / "empty")
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield served


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def library(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "models").iterdir() if not p.is_symlink() and not p.name.startswith("."))


def test_a_model_is_pulled_switched_to_searched_with_and_switched_back(
    hub: FakeHub,
    data_root: Path,
    data_dir: Path,
) -> None:
    small_catalog(data_root, data_dir, 4)
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "pulled tiny/dinov2-tiny as dinov2-tiny (hf-onnx layout, 24 dimensions" in out and "apache-2.0" in out
    record = json.loads((data_dir / "models" / "dinov2-tiny" / "record.json").read_text())
    assert record["kind"] == "pulled" and record["repo"] == "tiny/dinov2-tiny" and len(record["revision"]) == 40
    assert record["source"] == f"{hub.url}/tiny/dinov2-tiny@main"
    fetched = {path for method, path in hub.requests if method == "GET" and "/resolve/" in path}
    assert not any(path.endswith("README.md") is False and "docs" in path for path in fetched)

    code, out = run("models", "pull", "tiny/dinov2-tiny@v2", "--name", "dinov2-v2", "--data-dir", str(data_dir))
    assert code == 0 and "12 dimensions" in out, out
    code, out = run("models", "pull", "immich-tiny/ViT-Tiny__test", "--data-dir", str(data_dir))
    assert code == 0 and "as vit-tiny__test (immich layout, 16 dimensions" in out, out

    assert run("models", "use", "dinov2-v2", "--data-dir", str(data_dir))[0] == 0
    model, after = vectors(data_dir)
    assert model == "dinov2-v2" and after.shape == (12, 12)
    code, out = run(
        "search", str(data_root / "grocery_store" / "iconic" / "Kiwi_Iconic.jpg"), "--data-dir", str(data_dir)
    )
    assert code == 0, out
    assert run("models", "use", "--undo", "--data-dir", str(data_dir))[0] == 0
    assert vectors(data_dir)[0] == MODEL


def test_hub_failures_are_one_line_and_leave_the_library_as_it_was(
    hub: FakeHub,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [
        (("tiny/nothing-here",), "no such repository"),
        (("tiny/dinov2-tiny@v9",), "has no revision 'v9'"),
        (("tiny/no-model",), "holds no model in a layout tongkuan reads"),
        (("not a repo",), "is not a repository id"),
    ]
    for args, message in cases:
        code, out = run("models", "pull", *args, "--data-dir", str(data_dir))
        assert code == 1 and message in out and len(out.splitlines()) == 1, (args, out)

    hub.corrupt.add("onnx/model.onnx")
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 1 and "onnx/model.onnx does not match the hub's hash" in out, out
    hub.corrupt.clear()
    assert library(data_dir) == []
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))  # fetched again, whole
    assert code == 0, out
    assert library(data_dir) == ["dinov2-tiny"]

    hub.tokens["immich-tiny/ViT-Tiny__test"] = "secret-token"
    code, out = run("models", "pull", "immich-tiny/ViT-Tiny__test", "--data-dir", str(data_dir))
    assert code == 1 and "is gated" in out, out
    code, out = run(
        "models", "pull", "immich-tiny/ViT-Tiny__test", "--token", "secret-token", "--data-dir", str(data_dir)
    )
    assert code == 0, out

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    code, out = run("models", "pull", "tiny/other", "--name", "other", "--data-dir", str(data_dir))
    assert code == 1 and "cannot download tiny/other@main on http://127.0.0.1:9" in out, out


def test_a_download_cut_off_is_taken_up_again(hub: FakeHub, data_dir: Path) -> None:
    hub.cut_once.add("onnx/model.onnx")
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 0, out
    gets = [path for method, path in hub.requests if method == "GET" and path.endswith("onnx/model.onnx")]
    assert len(gets) == 2  # cut once, fetched again within the same pull


def test_offline_a_pull_takes_only_what_was_downloaded_before(
    hub: FakeHub,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 1 and "offline (HF_HUB_OFFLINE) and tiny/dinov2-tiny@main on " in out and "never downloaded" in out
    assert not [r for r in hub.requests if "dinov2" in r[1]]  # not one request
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))[0] == 0
    assert run("models", "remove", "dinov2-tiny", "--data-dir", str(data_dir))[0] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run("models", "pull", "tiny/dinov2-tiny", "--data-dir", str(data_dir))
    assert code == 0, out  # from the download cache

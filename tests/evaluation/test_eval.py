"""`tongkuan eval`: a check set of held-out shoppers' photos scores what the signed V2 API
answers for the same pictures; bad check sets are refused line by line; a cut run resumes;
other models are tried without switching the catalog; the misses are written as a page."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import as_records, new_data_dir, serve, settings_for
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.cli import main
from tongkuan.engine import Engine
from tongkuan.evaluation.decision import better
from tongkuan.evaluation.scoring import Scores
from tongkuan.sample import grocery_records

MODEL = "efficientnet-lite0"
PRODUCTS = 12


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def use_lite2(checks: Path, margin: str, data_dir: Path) -> tuple[int, str]:
    return run(
        "models",
        "use",
        "efficientnet-lite2",
        "--check",
        str(checks),
        "--check-margin",
        margin,
        "--data-dir",
        str(data_dir),
    )


def model_of(data_dir: Path) -> str:
    stored = SqliteCatalog.stored_spec(data_dir / "catalog.db")
    assert stored is not None
    return stored[0]


def held_out(data_root: Path, item_ids: set[str], per_product: int = 2) -> list[tuple[str, str]]:
    """(itemId, path under data_root) of val-split photos: pictures the catalog never saw."""
    taken: dict[str, int] = {}
    found = []
    with (data_root / "grocery_store" / "labels.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            item_id = f"grocery-{int(row['class_id']):03d}"
            if row["split"] == "val" and item_id in item_ids and taken.get(item_id, 0) < per_product:
                taken[item_id] = taken.get(item_id, 0) + 1
                found.append((item_id, f"grocery_store/{row['path']}"))
    return found


@pytest.fixture
def shop(data_root: Path, model_cache: Path, tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    raw = list(grocery_records(data_root, photos_per_product=1))[:PRODUCTS]
    engine = Engine(settings_for(data_dir, model=MODEL))
    try:
        assert not engine.ingester().ingest(as_records(raw)).failures
    finally:
        engine.close()
    return data_dir, raw


def write_checks(path: Path, data_root: Path, raw: list[dict[str, object]]) -> list[tuple[str, str]]:
    photos = held_out(data_root, {str(r["itemId"]) for r in raw})
    categories = {r["itemId"]: r.get("categoryId") for r in raw}
    lines = [
        {"picture": str(data_root / photo), "itemIds": [item_id], "categoryId": categories[item_id]}
        for item_id, photo in photos
    ]
    path.write_text("\n".join(json.dumps({k: v for k, v in line.items() if v is not None}) for line in lines))
    return photos


def test_eval_scores_what_the_signed_api_answers_for_the_same_pictures(
    shop: tuple[Path, list[dict[str, object]]], data_root: Path, tmp_path: Path, file_server: FileServer
) -> None:
    data_dir, raw = shop
    photos = write_checks(tmp_path / "checks.jsonl", data_root, raw)
    assert len(photos) >= PRODUCTS
    code, out = run("eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir), "--json")
    assert code == 0, out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["model"] == MODEL and figures["n"] == len(photos)
    assert {"R@1", "R@5", "R@20", "MRR", "category@1"} <= set(figures)

    ranks = []
    engine = Engine(settings_for(data_dir))
    try:
        with serve(create_app(engine.settings, engine=engine)) as service:
            for item_id, photo in photos:
                answer = service.get("/taobao/image-search/url", {"picUrl": file_server.url(photo), "pageSize": "20"})
                found = [item["itemId"] for item in answer.json()["data"]["data"]]
                ranks.append(found.index(item_id) + 1 if item_id in found else None)
    finally:
        engine.close()
    for k in (1, 5):
        api = sum(1 for r in ranks if r is not None and r <= k) / len(ranks)
        assert abs(figures[f"R@{k}"] - api) <= 0.02, (k, figures, ranks)
    assert 0.2 <= figures["R@1"] < 1  # a real search, not a constant

    code, out = run("eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir))
    assert code == 0 and f"{MODEL}: R@1 " in out, out
    assert "category top-1" in out


def test_bad_check_sets_are_refused_naming_each_line(
    shop: tuple[Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    data_dir, raw = shop
    lines = [
        '{"picture": "a.jpg", "itemIds": ["grocery-001"]}',
        '{"picture": "a.jpg", "itemIds": ["no-such-item"]}',
        "not json",
        '{"picture": "a.jpg"}',
        '{"picture": "a.jpg", "itemIds": ["grocery-001"], "region": "9,3,0,5"}',
        '{"picture": "a.jpg", "productGroup": "nobody"}',
        '{"picture": "a.jpg", "itemIds": ["grocery-001"], "colour": "red"}',
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines))
    code, out = run("eval", str(tmp_path / "bad.jsonl"), "--data-dir", str(data_dir))
    assert code == 1 and len(out.strip().splitlines()) == 1, out
    for expected in (
        "line 2: itemId 'no-such-item' is not in the catalog",
        "line 3: not a JSON object",
        "line 4: itemIds must be a non-empty list",
        "line 5: region must be x1,x2,y1,y2",
        "line 6: no product of the catalog has productGroup 'nobody'",
        "line 7: unknown field 'colour'",
    ):
        assert expected in out, (expected, out)
    assert "line 1" not in out

    (tmp_path / "unreadable.jsonl").write_text('{"picture": "missing.jpg", "itemIds": ["grocery-001"]}')
    code, out = run("eval", str(tmp_path / "unreadable.jsonl"), "--data-dir", str(data_dir), "--json")
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["failed"] == 1  # counted apart, not scored


def test_a_cut_run_resumes_from_the_checks_it_finished(
    shop: tuple[Path, list[dict[str, object]]], data_root: Path, tmp_path: Path
) -> None:
    data_dir, raw = shop
    write_checks(tmp_path / "checks.jsonl", data_root, raw)
    from tongkuan.evaluation.runner import progress_file

    kept = progress_file(data_dir / "eval" / "progress", tmp_path / "checks.jsonl", MODEL)
    kept.parent.mkdir(parents=True)
    # as a run cut after two checks leaves it: the first two "finished" (here: as misses), a torn third line
    finished = [
        {"line": n, "rank": None, "first": "grocery-999", "category_right": False, "failed": ""} for n in (1, 2)
    ]
    kept.write_text("".join(json.dumps(f) + "\n" for f in finished) + '{"line": 3, "ra')
    code, out = run("eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir), "--json")
    assert code == 0, out
    resumed = json.loads(out.strip().splitlines()[-1])
    assert not kept.exists()  # a whole run leaves nothing to resume
    code, out = run("eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir), "--json")
    whole = json.loads(out.strip().splitlines()[-1])
    assert resumed["n"] == whole["n"]
    assert resumed["R@20"] < whole["R@20"] or whole["R@20"] == 0  # the two kept misses counted, not redone


def test_other_models_are_tried_without_switching_the_catalog_and_misses_are_shown(
    shop: tuple[Path, list[dict[str, object]]], data_root: Path, tmp_path: Path
) -> None:
    data_dir, raw = shop
    write_checks(tmp_path / "checks.jsonl", data_root, raw)
    report = tmp_path / "misses"
    code, out = run(
        "eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir),
        "--model", MODEL, "--model", "efficientnet-lite2", "--json", "--report", str(report),
    )  # fmt: skip
    assert code == 0, out
    rows = [json.loads(line[line.index('{"model"') :]) for line in out.splitlines() if '{"model"' in line]
    assert [row["model"] for row in rows] == [MODEL, "efficientnet-lite2"]
    engine = Engine(settings_for(data_dir))
    try:
        assert engine.vision.spec.name == MODEL  # the catalog kept its model
        assert not engine.catalog.unstaged("efficientnet-lite2")  # its vectors wait for a switch
    finally:
        engine.close()
    assert not (data_dir / "eval" / "trial-efficientnet-lite2").exists()
    for model in (MODEL, "efficientnet-lite2"):
        page = (report / model / "index.html").read_text()
        assert f"Misses of {model}" in page and "R@1" in page
    assert list((report / MODEL).glob("query-*.jpg")) or "no misses" in (report / MODEL / "index.html").read_text()


def test_the_rule_switches_only_on_a_real_gain_in_r1_without_a_loss_in_r5() -> None:
    def scores(r1: float, r5: float) -> Scores:
        return Scores(r1, r5, 1.0, r1, 40, None, 0, 0)

    assert better(scores(0.50, 0.80), scores(0.55, 0.80))[0]
    chosen, reason = better(scores(0.50, 0.80), scores(0.51, 0.90))
    assert not chosen and "R@1 rose by less than 0.020" in reason and "R@1 0.500 -> 0.510" in reason
    chosen, reason = better(scores(0.50, 0.80), scores(0.70, 0.78))
    assert not chosen and "R@5 fell" in reason


def test_models_use_switches_when_the_check_set_says_so_and_keeps_the_model_when_not(
    shop: tuple[Path, list[dict[str, object]]], data_root: Path, tmp_path: Path
) -> None:
    data_dir, raw = shop
    checks = tmp_path / "checks.jsonl"
    write_checks(checks, data_root, raw)
    code, out = run(
        "eval", str(checks), "--data-dir", str(data_dir), "--model", MODEL, "--model", "efficientnet-lite2", "--json"
    )
    before, after = (json.loads(line[line.index('{"model"') :]) for line in out.splitlines() if '{"model"' in line)
    assert after["R@5"] >= before["R@5"], (before, after)

    code, out = use_lite2(checks, "1", data_dir)
    assert code == 0 and "R@1 rose by less than 1.000" in out and f"the catalog keeps {MODEL}" in out, out
    assert model_of(data_dir) == MODEL

    gain = round(after["R@1"] - before["R@1"], 4) - 0.001  # exactly what lite2 gains: enough
    code, out = use_lite2(checks, str(gain), data_dir)
    assert code == 0 and "R@5 did not fall" in out and "switched to efficientnet-lite2" in out, out


def test_tune_switches_by_the_check_set_when_one_is_given(data_root: Path, model_cache: Path, tmp_path: Path) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    raw = list(grocery_records(data_root, photos_per_product=2))[:22]
    engine = Engine(settings_for(data_dir, model=MODEL))
    assert not engine.ingester().ingest(as_records(raw)).failures
    engine.close()
    every = [str(r["itemId"]) for r in raw]
    photos = held_out(data_root, set(every), per_product=1)[:6]
    strict = tmp_path / "strict.jsonl"  # each photo's own product: the tuned model must gain a whole R@1
    strict.write_text("\n".join(json.dumps({"picture": str(data_root / p), "itemIds": [i]}) for i, p in photos))
    code, out = run("tune", "--epochs", "1", "--check", str(strict), "--check-margin", "1", "--data-dir", str(data_dir))
    assert code == 0 and "the check set decided: R@1 rose by less than 1.000" in out, out
    assert "the catalog keeps its model" in out and model_of(data_dir) == MODEL

    lenient = tmp_path / "lenient.jsonl"  # any product is right: no model can do worse, and the margin is 0
    lenient.write_text("\n".join(json.dumps({"picture": str(data_root / p), "itemIds": every}) for _, p in photos))
    code, out = run(
        "tune", "--epochs", "1", "--check", str(lenient), "--check-margin", "0", "--data-dir", str(data_dir)
    )
    assert code == 0 and "R@5 did not fall" in out and "switched to " in out, out
    assert model_of(data_dir) != MODEL  # the tuned model


def test_whiten_learns_only_when_the_check_set_finds_the_catalog_better(
    data_root: Path, model_cache: Path, tmp_path: Path
) -> None:
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    raw = list(grocery_records(data_root, photos_per_product=3))[:40]
    engine = Engine(settings_for(data_dir, model=MODEL))
    assert not engine.ingester().ingest(as_records(raw)).failures
    engine.close()
    photos = held_out(data_root, {str(r["itemId"]) for r in raw}, per_product=1)[:10]
    checks = tmp_path / "checks.jsonl"
    checks.write_text("\n".join(json.dumps({"picture": str(data_root / p), "itemIds": [i]}) for i, p in photos))
    code, out = run("whiten", "--check", str(checks), "--check-margin", "1", "--data-dir", str(data_dir))
    assert code == 0 and "R@1 rose by less than 1.000" in out and "the catalog stays as it is" in out, out
    assert not (data_dir / "eval" / f"trial-{MODEL}").exists()
    engine = Engine(settings_for(data_dir))
    assert engine.catalog.learned("whitening") is None  # nothing learned in the catalog itself
    engine.close()
    code, out = run("whiten", "--check", str(checks), "--check-margin", "-1", "--data-dir", str(data_dir))
    assert code == 0 and ("learned " in out) == ("R@5 did not fall" in out), out

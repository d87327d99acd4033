"""`tongkuan backup` while the service runs and writes, then `tongkuan restore` and search."""

from __future__ import annotations

import io
import itertools
import json
import signal
import sqlite3
import tarfile
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import new_data_dir
from tests.utils.fileserver import FileServer
from tests.utils.server import Server
from tongkuan.cli import main

TOKEN = "backup-test-admin-token-01"
ENV = {"TONGKUAN_ADMIN_TOKEN": TOKEN}
MODEL = "efficientnet-lite0"
NAMES = ["Arla-Standard-Milk", "Banana", "Bravo-Apple-Juice", "Granny-Smith", "Alpro-Fresh-Soy-Milk", "Lemon"]
QUERIES = {
    "Banana": "grocery_store/images/val/Fruit/Banana/Banana_001.jpg",
    "Arla-Standard-Milk": "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg",
}


def picture(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((80, 80), 30 + seed % 60).convert("RGB").save(out, "PNG")
    return out.getvalue()


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def consistent(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / "catalog.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        orphans = "SELECT COUNT(*) FROM items WHERE item_id NOT IN (SELECT item_id FROM images)"
        assert db.execute(orphans).fetchone() == (0,)
        items = int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        assert db.execute("SELECT COUNT(*) FROM item_words").fetchone() == (items,)
        for (location,) in db.execute("SELECT location FROM images"):
            assert location.startswith("http") or (data_dir / "images" / location).is_file(), location
        return items
    finally:
        db.close()


def test_a_backup_taken_under_writes_restores_to_the_same_search(
    tmp_path: Path, model_cache: Path, data_root: Path, file_server: FileServer
) -> None:
    data_dir = new_data_dir(tmp_path / "live", model_cache)
    records = tmp_path / "items.jsonl"
    records.write_text(
        "\n".join(
            json.dumps(
                {"itemId": n, "title": n, "images": [str(data_root / "grocery_store/iconic" / f"{n}_Iconic.jpg")]}
            )
            for n in NAMES
        )
    )
    run("ingest", str(records), "--data-dir", str(data_dir), "--model", MODEL)
    server = Server(data_dir, MODEL, ENV)
    server.start()
    stop = threading.Event()
    acknowledged: list[str] = []

    def write() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            for n in itertools.count():
                if stop.is_set():
                    return
                files = [("images", (f"{n}.png", picture(n)))]
                body = client.put(
                    f"/admin/products/w{n}",
                    data={"product": json.dumps({"title": f"写入 {n}"})},
                    files=files,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ).json()
                assert body["code"] == 200, body
                acknowledged.append(f"w{n}")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(acknowledged) < 3:
            threading.Event().wait(0.1)
        before = list(acknowledged)
        archive = tmp_path / "backup" / "tongkuan.tar.gz"
        assert "backed up" in run("backup", str(archive), "--data-dir", str(data_dir))
        stop.set()
        writer.join()
        originals = {name: server.top_ids(file_server.url(query), 20) for name, query in QUERIES.items()}
    finally:
        stop.set()
        server.stop(signal.SIGKILL)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "catalog.db" in names and any(n.startswith("index/") for n in names)
    assert not any(n.endswith((".part", "-wal", "-shm")) or n.startswith("models") for n in names)

    restored = tmp_path / "restored"
    assert "restored" in run("restore", str(archive), "--data-dir", str(restored))
    items = consistent(restored)
    assert len(NAMES) + len(before) <= items <= len(NAMES) + len(acknowledged)
    (restored / "models").symlink_to(model_cache / "models")
    server = Server(restored, MODEL, ENV)
    server.start()
    try:
        for name, query in QUERIES.items():
            got = server.top_ids(file_server.url(query), 20)
            # the live catalog held more written products when it was searched: compare the rest
            assert (
                got[0] == name
                and [i for i in got if not i.startswith("w")][:3]
                == [i for i in originals[name] if not i.startswith("w")][:3]
            )
        for item_id in before:
            body = httpx.get(
                f"http://127.0.0.1:{server.port}/admin/products/{item_id}", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()
            assert body["code"] == 200 and body["data"]["title"].startswith("写入")
    finally:
        server.stop(signal.SIGKILL)


def test_restore_refuses_to_overwrite_or_to_unpack_junk(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "live", model_cache)
    (data_dir / "catalog.db").write_bytes(b"")  # an empty, valid SQLite file
    archive = tmp_path / "b.tar"
    run("backup", str(archive), "--data-dir", str(data_dir))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    refused = CliRunner().invoke(main, ["restore", str(archive), "--data-dir", str(occupied)])
    assert refused.exit_code != 0 and "not empty" in refused.output
    assert (occupied / "keep.txt").read_text() == "mine"
    run("restore", str(archive), "--data-dir", str(occupied), "--force")
    assert (occupied / "catalog.db").exists() and not (occupied / "keep.txt").exists()

    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all")
    result = CliRunner().invoke(main, ["restore", str(junk), "--data-dir", str(tmp_path / "new")])
    assert result.exit_code != 0 and "cannot be restored" in result.output
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
    nothing = CliRunner().invoke(main, ["backup", str(tmp_path / "x.tar"), "--data-dir", str(tmp_path / "empty")])
    assert nothing.exit_code != 0 and "no catalog" in nothing.output


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt"])
def test_restore_never_writes_outside_the_data_directory(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"x"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = CliRunner().invoke(main, ["restore", str(archive), "--data-dir", str(tmp_path / "target")])
    assert result.exit_code != 0
    assert not (tmp_path / "evil.txt").exists()


def test_a_backup_is_readable_by_its_owner_only(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "live", model_cache)
    (data_dir / "catalog.db").write_bytes(b"")
    (data_dir / "tongkuan.toml").write_text('apps = "key:a-secret-of-the-shop"\n')
    for name in ("b.tar", "b.tar.gz"):
        run("backup", str(tmp_path / name), "--data-dir", str(data_dir))
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600  # it holds the apps' secrets


def test_restore_leaves_the_archives_settings_out_unless_asked(tmp_path: Path, model_cache: Path) -> None:
    data_dir = new_data_dir(tmp_path / "live", model_cache)
    (data_dir / "catalog.db").write_bytes(b"")
    (data_dir / "tongkuan.toml").write_text(
        'apps = "key:a-secret-of-the-shop"\nallowed_hosts = "*"\nforwarded_allow_ips = "*"\nthreads = 1\n'
    )
    archive = tmp_path / "b.tar"
    run("backup", str(archive), "--data-dir", str(data_dir))

    target = tmp_path / "target"
    out = run("restore", str(archive), "--data-dir", str(target))
    assert not (target / "tongkuan.toml").exists()
    assert "settings not restored (allowed_hosts, apps, forwarded_allow_ips, threads)" in out
    assert "a-secret-of-the-shop" not in out and "--with-settings" in out

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tongkuan.toml").write_text("threads = 2\n")
    run("restore", str(archive), "--data-dir", str(mine), "--force")
    assert (mine / "tongkuan.toml").read_text() == "threads = 2\n"  # the directory's own settings stay

    out = run("restore", str(archive), "--data-dir", str(tmp_path / "asked"), "--with-settings")
    assert "forwarded_allow_ips" in (tmp_path / "asked" / "tongkuan.toml").read_text()
    assert "settings restored: allowed_hosts, apps, forwarded_allow_ips, threads" in out

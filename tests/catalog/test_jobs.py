"""Import jobs kept in the catalog store, on both stores: one process holds a job's lease at a
time, another takes the job over once the lease lapses, and the first then learns it lost it;
a statement that outlives the backend deadline is refused, not waited for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import new_database
from tests.utils.postgres_server import PostgresServer
from tongkuan.catalog.postgres import PostgresCatalog
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.errors import StoreUnavailable

LEASE_S = 0.5


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Catalog, Catalog]]:
    """Two processes' views of one catalog."""
    if request.param == "sqlite":
        pair: tuple[Catalog, Catalog] = (
            SqliteCatalog(tmp_path / "catalog.db", "m", 4),
            SqliteCatalog(tmp_path / "catalog.db", "m", 4),
        )
    else:
        url = new_database(request.getfixturevalue("postgres"))
        pair = (PostgresCatalog(url, "m", 4), PostgresCatalog(url, "m", 4))
    yield pair
    for store in pair:
        store.close()


def test_a_job_is_seen_by_every_process_and_run_by_one_at_a_time(stores: tuple[Catalog, Catalog]) -> None:
    first, second = stores
    first.add_job("j1", 1.0, '{"state": "queued"}', b"records")
    assert second.job_status("j1") == '{"state": "queued"}' and second.job_statuses() == ['{"state": "queued"}']
    assert second.job_status("nope") is None
    assert first.claim_job("one", LEASE_S) == ("j1", '{"state": "queued"}', b"records")
    assert second.claim_job("two", LEASE_S) is None  # held
    assert first.update_job("j1", "one", '{"state": "running"}', LEASE_S)  # renewed
    assert second.claim_job("two", LEASE_S) is None
    time.sleep(LEASE_S + 0.2)  # the runner went quiet
    assert second.claim_job("two", LEASE_S) == ("j1", '{"state": "running"}', b"records")
    assert not first.update_job("j1", "one", '{"state": "done"}', LEASE_S, done=True)  # it lost the job
    assert second.update_job("j1", "two", '{"state": "done"}', LEASE_S, done=True)
    time.sleep(LEASE_S + 0.2)
    assert first.claim_job("one", LEASE_S) is None and second.claim_job("two", LEASE_S) is None  # done for good
    assert first.job_status("j1") == '{"state": "done"}'


def test_jobs_are_taken_oldest_first_and_a_let_go_job_at_once(stores: tuple[Catalog, Catalog]) -> None:
    first, second = stores
    first.add_job("later", 2.0, "{}", b"b")
    first.add_job("sooner", 1.0, "{}", b"a")
    first.add_job("finished", 0.5, "{}", b"", done=True)
    assert first.claim_job("one", 60)[0] == "sooner"  # type: ignore[index]
    assert second.claim_job("two", 60)[0] == "later"  # type: ignore[index]
    assert first.update_job("sooner", "one", "{}", 0.0)  # stopped: let go
    assert second.claim_job("two", 60)[0] == "sooner"  # type: ignore[index]


def test_a_statement_past_the_deadline_is_refused(postgres: PostgresServer) -> None:
    catalog = PostgresCatalog(new_database(postgres), "m", 4, timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            catalog._rows("SELECT pg_sleep(5)")  # noqa: SLF001
        assert time.monotonic() - started < 2 and raised.value.public_message == "the catalog store is unavailable"
    finally:
        catalog.close()


def test_a_finished_job_keeps_no_records_and_only_a_finished_job_is_deleted(stores: tuple[Catalog, Catalog]) -> None:
    first, second = stores
    first.add_job("running", 1.0, "{}", b"records")
    first.add_job("queued", 2.0, "{}", b"more records")
    assert first.claim_job("one", 60) == ("running", "{}", b"records")
    assert first.update_job("running", "one", '{"state": "done"}', 60, done=True)
    assert stored_body(second, "running") == b""  # the records go once the job ends
    assert second.delete_job("running") and second.job_status("running") is None  # type: ignore[attr-defined]
    assert not second.delete_job("running")  # type: ignore[attr-defined]  # gone already
    assert not second.delete_job("queued") and second.job_status("queued") == "{}"  # type: ignore[attr-defined]


def stored_body(store: Catalog, job_id: str) -> bytes:
    query = "SELECT body FROM import_jobs WHERE job_id = "
    if isinstance(store, SqliteCatalog):
        return bytes(store._db.execute(query + "?", (job_id,)).fetchone()[0])  # noqa: SLF001
    assert isinstance(store, PostgresCatalog)
    return bytes(store._rows(query + "%s", (job_id,))[0][0])  # noqa: SLF001

"""Import jobs in the embedded catalog (`JobStore`), in its `import_jobs` table; lease times
are this machine's clock, the one every process sharing the file reads."""

from __future__ import annotations

import time

from tongkuan.catalog.sqlite.database import SqliteDatabase


class SqliteJobs(SqliteDatabase):
    """`JobStore` on the embedded catalog."""

    def add_job(self, job_id: str, created: float, status: str, body: bytes, done: bool = False) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO import_jobs (job_id, created, status, open, body) VALUES (?, ?, ?, ?, ?)",
                (job_id, created, status, 0 if done else 1, body),
            )

    def job_status(self, job_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM import_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def job_statuses(self) -> list[str]:
        rows = self._db.execute("SELECT status FROM import_jobs ORDER BY created, job_id").fetchall()
        return [str(row[0]) for row in rows]

    def claim_job(self, owner: str, lease_s: float) -> tuple[str, str, bytes] | None:
        with self._write() as db:
            now = time.time()
            row = db.execute(
                "SELECT job_id, status, body FROM import_jobs WHERE open AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY created, job_id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE import_jobs SET lease_owner = ?, lease_until = ? WHERE job_id = ?",
                (owner, now + lease_s, row[0]),
            )
            return str(row[0]), str(row[1]), bytes(row[2])

    def update_job(self, job_id: str, owner: str, status: str, lease_s: float, done: bool = False) -> bool:
        # an ended job's records are not needed again: they go with the last update
        cleared = ", body = X''" if done else ""
        with self._write() as db:
            changed = db.execute(
                f"UPDATE import_jobs SET status = ?, lease_until = ?, open = ?{cleared} "
                "WHERE job_id = ? AND lease_owner = ?",
                (status, time.time() + lease_s, 0 if done else 1, job_id, owner),
            ).rowcount
        return changed == 1

    def delete_job(self, job_id: str) -> bool:
        """Delete a job that ended (done or failed); False, deleting nothing, when there is no
        such job or it is still open (queued, or running somewhere)."""
        with self._write() as db:
            return db.execute("DELETE FROM import_jobs WHERE job_id = ? AND NOT open", (job_id,)).rowcount == 1

"""Import jobs in the server catalog (`JobStore`), in its `import_jobs` table, shared by every
replica; lease times are the database server's clock, so replicas' clocks need not agree."""

from __future__ import annotations

from tongkuan.catalog.postgres.database import PostgresDatabase, no_statement_timeout, values_checked

_NOW = "extract(epoch FROM clock_timestamp())"


class PostgresJobs(PostgresDatabase):
    """`JobStore` on the server catalog."""

    def add_job(self, job_id: str, created: float, status: str, body: bytes, done: bool = False) -> None:
        # a big import's records take a while to store: the deadline is for requests' reads
        with values_checked(), self._pool.connection() as db, no_statement_timeout(db):
            db.execute(
                "INSERT INTO import_jobs (job_id, created, status, open, body) VALUES (%s, %s, %s, %s, %s)",
                (job_id, created, status, not done, body),
            )

    def job_status(self, job_id: str) -> str | None:
        rows = self._rows("SELECT status FROM import_jobs WHERE job_id = %s", (job_id,))
        return str(rows[0][0]) if rows else None

    def job_statuses(self) -> list[str]:
        return [str(row[0]) for row in self._rows("SELECT status FROM import_jobs ORDER BY created, job_id")]

    def claim_job(self, owner: str, lease_s: float) -> tuple[str, str, bytes] | None:
        # SKIP LOCKED: replicas claiming at once each get another job (or none), never wait
        with values_checked(), self._pool.connection() as db, no_statement_timeout(db), db.transaction():
            row = db.execute(
                "SELECT job_id, status, body FROM import_jobs "
                f"WHERE open AND (lease_until IS NULL OR lease_until < {_NOW}) "
                "ORDER BY created, job_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                f"UPDATE import_jobs SET lease_owner = %s, lease_until = {_NOW} + %s WHERE job_id = %s",
                (owner, lease_s, row[0]),
            )
            return str(row[0]), str(row[1]), bytes(row[2])

    def update_job(self, job_id: str, owner: str, status: str, lease_s: float, done: bool = False) -> bool:
        # an ended job's records are not needed again: they go with the last update
        cleared = ", body = ''::bytea" if done else ""
        with values_checked(), self._pool.connection() as db:
            changed = db.execute(
                f"UPDATE import_jobs SET status = %s, lease_until = {_NOW} + %s, open = %s{cleared} "
                "WHERE job_id = %s AND lease_owner = %s",
                (status, lease_s, not done, job_id, owner),
            ).rowcount
        return changed == 1

    def delete_job(self, job_id: str) -> bool:
        """Delete a job that ended (done or failed); False, deleting nothing, when there is no
        such job or it is still open (queued, or running somewhere)."""
        with values_checked(), self._pool.connection() as db:
            return db.execute("DELETE FROM import_jobs WHERE job_id = %s AND NOT open", (job_id,)).rowcount == 1

"""The server catalog: products, vectors and the change log in PostgreSQL, shared by replicas.

Same contract as the embedded store (`catalog.store.Catalog`): a product's record, its
pictures (with their float32 vectors) and change-log entries commit in one transaction, and
writers commit one at a time, so change-log sequence numbers commit in order.

`PostgresCatalog` implements every role of `Catalog`, one module each: `database` (schema,
migrations, pool, transactions, locks), `writer`, `products`, `search_reads`,
`keyword_search`, `changes` (what a vector index reads), `learned`,
`picture_words` (the text read on pictures) and `jobs` (import jobs).
"""

from __future__ import annotations

from tongkuan.catalog.postgres.changes import PostgresIndexSource
from tongkuan.catalog.postgres.database import MIGRATIONS, SCHEMA, migrate
from tongkuan.catalog.postgres.jobs import PostgresJobs
from tongkuan.catalog.postgres.keyword_search import PostgresKeywordSearch
from tongkuan.catalog.postgres.learned import PostgresLearned
from tongkuan.catalog.postgres.models import PostgresModelVersions
from tongkuan.catalog.postgres.picture_words import PostgresPictureWords
from tongkuan.catalog.postgres.products import PostgresProductReader
from tongkuan.catalog.postgres.search_reads import PostgresSearchReads
from tongkuan.catalog.postgres.writer import PostgresProductWriter

__all__ = ["MIGRATIONS", "SCHEMA", "PostgresCatalog", "migrate"]


class PostgresCatalog(
    PostgresProductWriter,
    PostgresProductReader,
    PostgresSearchReads,
    PostgresKeywordSearch,
    PostgresIndexSource,
    PostgresLearned,
    PostgresModelVersions,
    PostgresPictureWords,
    PostgresJobs,
):
    """Products and vectors in the PostgreSQL database at `url` (a libpq URL or DSN)."""

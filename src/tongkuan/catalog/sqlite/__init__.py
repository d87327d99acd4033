"""The embedded catalog: products, their pictures' vectors and a change log, in one SQLite file.

SQLite is the source of truth. Each picture row carries its float32 vector, and every add or
delete of a vector appends to `changes` in the same transaction as the record, so a vector
index is a cache that any process can bring up to date (`changes_since`) or rebuild. WAL
mode lets readers run beside the one writer; `snapshot()` pins a consistent read view.

`SqliteCatalog` implements every role of `catalog.store.Catalog`, one module each:
`database` (the file, connections, transactions, locks, schema), `writer`, `products`,
`search_reads`, `keyword_search`, `changes` (what a vector index reads), `learned`,
`picture_words` (the text read on pictures) and `jobs` (import jobs).
"""

from __future__ import annotations

from tongkuan.catalog.sqlite.changes import SqliteIndexSource
from tongkuan.catalog.sqlite.database import KEYWORDS_VERSION, SCHEMA
from tongkuan.catalog.sqlite.jobs import SqliteJobs
from tongkuan.catalog.sqlite.keyword_search import SqliteKeywordSearch
from tongkuan.catalog.sqlite.learned import SqliteLearned
from tongkuan.catalog.sqlite.models import SqliteModelVersions
from tongkuan.catalog.sqlite.picture_words import SqlitePictureWords
from tongkuan.catalog.sqlite.products import SqliteProductReader
from tongkuan.catalog.sqlite.search_reads import SqliteSearchReads
from tongkuan.catalog.sqlite.writer import SqliteProductWriter

__all__ = ["KEYWORDS_VERSION", "SCHEMA", "SqliteCatalog"]


class SqliteCatalog(
    SqliteProductWriter,
    SqliteProductReader,
    SqliteSearchReads,
    SqliteKeywordSearch,
    SqliteIndexSource,
    SqliteLearned,
    SqliteModelVersions,
    SqlitePictureWords,
    SqliteJobs,
):
    """Products and vectors in the file `path`. Safe to share between threads and processes."""

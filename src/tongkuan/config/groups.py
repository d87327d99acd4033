"""The groups of settings, one per concern, each read by the parts it configures: the
service's edge in `tongkuan.config.serving`, the model, search, index and backends here, and
`GROUPS`, every group under its name (`tongkuan.config.base` says how a group is built)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tongkuan.config.base import Group, flat, lower_scheme
from tongkuan.config.serving import Access, Decode, Fetch, Http, Limits
from tongkuan.domain.indexes import IndexKind
from tongkuan.domain.models import DEFAULT_MODEL, is_library_name, is_shipped, is_tuned
from tongkuan.search.query import SearchOptions


class Models(Group):
    """The model and how it runs."""

    model: str | None = Field(
        None,
        description="A shipped model (efficientnet-lite0, efficientnet-lite2), a tuned model's name "
        "(tuned-..., stored in the catalog), an imported or pulled model's name (tongkuan models list) "
        "or a path to a model.json; "
        f"unset: the model the data directory was built with, else {DEFAULT_MODEL}.",
    )
    threads: int = Field(2, ge=1, description="ONNX Runtime threads per inference.")
    inference_slots: int = Field(1, ge=1, description="Inferences run at once; the rest wait their turn.")
    search_batch: int = Field(
        4,
        ge=1,
        le=64,
        description="Searches' pictures that wait for the model at the same time run in one pass, up to "
        "this many (1: each alone).",
    )
    read_text: Literal["auto", "on", "off"] = Field(
        "off",
        description="Read the text on pictures (PP-OCRv5) and rank by it: auto where a catalog's first 64 "
        "pictures show words in a quarter of them or more, on, or off.",
    )

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        import os
        from pathlib import Path

        if not value or is_shipped(value) or is_tuned(value) or is_library_name(value):
            return value or None  # an imported model's name is checked against the data directory
        described = Path(value).expanduser()
        if described.suffix == ".json" and described.is_file():
            return os.path.abspath(described)  # like the folders: independent of the working directory
        raise ValueError("not a model")


_SEARCH = SearchOptions()


class Search(Group):
    """How a query is answered (`tongkuan.search.query.SearchOptions`, field for field)."""

    prior_weight: float = flat(
        "category_prior_weight",
        _SEARCH.prior_weight,
        "Weight of the classifier prior against the neighbour vote.",
        ge=0.0,
        le=1.0,
    )
    neighbours: int = flat("category_neighbours", _SEARCH.neighbours, "Catalog images that vote on the category.", ge=1)
    images_per_product: int = Field(
        _SEARCH.images_per_product,
        ge=1,
        description="A product scores the mean similarity of this many of its best pictures.",
    )
    filter_predicted_category: bool = Field(
        _SEARCH.filter_predicted_category,
        description="Search only within the predicted category when categoryId is not given.",
    )
    find_insets: bool = Field(
        _SEARCH.find_insets,
        description="In a query, a picture shown inside the picture (a screenshot) is its main subject.",
    )
    cached_pictures: int = flat(
        "query_cache",
        _SEARCH.cached_pictures,
        "Query pictures whose description (subjects, category prior, embedding) is kept, by "
        "content: the next page of a search by the same picture skips the model. About 10 kB each; 0: none.",
        ge=0,
    )

    def options(self) -> SearchOptions:
        return SearchOptions(**self.model_dump())


class Index(Group):
    """The embedded vector index (faiss); Milvus has its own in `Backends`."""

    kind: IndexKind = flat(
        "index_kind",
        IndexKind.HNSW_SQ8,
        "Vector index: hnsw-sq8 (HNSW over 8-bit codes, exact scan below 10k pictures), "
        "hnsw (HNSW over float32) or flat (exact scan).",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node: more is more exact and larger.")
    hnsw_ef_search: int = Field(128, ge=16, description="HNSW search breadth: higher is slower and more exact.")


class Backends(Group):
    """The server stores many replicas share: PostgreSQL for the catalog, Milvus for vectors."""

    catalog_url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:port/db) for a catalog shared by "
        "many replicas; unset: the embedded SQLite catalog in the data directory.",
    )
    catalog_pool_size: int = Field(8, ge=1, description="PostgreSQL connections per process.")
    vectors_url: str | None = Field(
        None,
        description="Milvus address (milvus://host:19530[/collection-prefix]) for vectors shared by "
        "many replicas; unset: the embedded faiss index.",
    )
    milvus_token: str = Field("", description='Milvus credentials ("user:password" or an API key).')
    milvus_consistency: str = Field(
        "Session",
        description="Milvus read consistency: Session (every acknowledged write is seen by every replica, "
        "waiting only while Milvus applies it), Strong (also waits for a fresh timestamp, ~200 ms), "
        "Bounded or Eventually (never wait; may miss the last seconds of writes).",
    )
    timeout_s: float = flat(
        "backend_timeout_s",
        5.0,
        "Deadline in seconds of every call to PostgreSQL and Milvus (connecting, waiting for a "
        "pooled connection, each statement or request); past it the request answers 503.",
        gt=0,
    )
    import_job_lease_s: float = Field(
        30.0,
        gt=0,
        description="Seconds an import job stays with the process running it without word from it; "
        "after that, another process sharing the catalog takes the job over.",
    )

    @field_validator("catalog_url")
    @classmethod
    def _check_catalog_url(cls, value: str | None) -> str | None:
        value = lower_scheme(value)
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("not a postgresql:// URL")
        return value or None

    @field_validator("vectors_url")
    @classmethod
    def _check_vectors_url(cls, value: str | None) -> str | None:
        value = lower_scheme(value)
        if value and not value.startswith(("milvus://", "milvus+https://", "http://", "https://")):
            raise ValueError("not a milvus:// URL")
        return value or None

    @field_validator("milvus_consistency")
    @classmethod
    def _check_consistency(cls, value: str) -> str:
        if value not in ("Session", "Strong", "Bounded", "Eventually"):
            raise ValueError("not a Milvus consistency level")
        return value


GROUPS: dict[str, type[Group]] = {
    "access": Access,
    "http": Http,
    "limits": Limits,
    "fetch": Fetch,
    "decode": Decode,
    "models": Models,
    "search": Search,
    "index": Index,
    "backends": Backends,
}
"""Each group under the name `Settings` holds it by, in the order the README lists them."""

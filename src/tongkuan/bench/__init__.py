"""Support for measuring the service: the one place the benchmarks in `bench/` import from.

A benchmark measures the service as its users reach it wherever it can (the `tongkuan`
command, the HTTP API, `tongkuan.client`); what has no public form is here:
- real-data readers: the data sets' label files, and scenes with a known subject box;
- loopback servers to measure against: picture hosts that behave or misbehave, throwaway
  PostgreSQL and Milvus servers;
- keyword search quality on Product1M titles, against a substring baseline;
- the model-level entry points the quality benchmarks embed pictures with, and variants of
  the service's own steps measured against it (one backbone pass, a cheaper first pass,
  cropping every subject, unmarked ingestion, the any-term keyword ranking);
- the parts a component benchmark drives directly (catalogs, indexes, the searcher, the
  engine in process) and the entry points of tuning.

The names in `__all__` are a supported surface for benchmarks: they keep their meaning
while the modules behind them move. Each is imported on first use, from the module that
holds it (`_HOME`), so a benchmark's process loads what it measures and nothing more
(neither torch nor psycopg unless it asks for a name that needs them). Nothing of the
package imports this one.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that holds it
_HOME: dict[str, str] = {
    # real data
    "read_rows": "tongkuan.bench.data",  # a data set's CSV label file, as dicts
    "Composite": "tongkuan.bench.data",  # a scene with a known subject box
    "composites": "tongkuan.bench.data",  # seeded scenes: a catalog shot pasted into a real photo
    # loopback servers to measure against
    "free_port": "tongkuan.bench.servers",  # a TCP port free on 127.0.0.1
    "FileServer": "tongkuan.bench.servers",  # a picture host: files, and hosts that misbehave
    "PostgresServer": "tongkuan.bench.servers",  # a throwaway PostgreSQL cluster
    "postgres_available": "tongkuan.bench.servers",  # whether PostgreSQL's programs are installed
    "MilvusServer": "tongkuan.bench.milvus",  # a throwaway Milvus standalone server
    # keyword search quality
    "RECALL_AT": "tongkuan.bench.keywords",  # the keyword tables' recall cut-off
    "load_titles": "tongkuan.bench.keywords",  # Product1M into a catalog; label -> relevant itemIds
    "evaluate": "tongkuan.bench.keywords",  # nDCG@10, Recall@20 and time per query of a search
    "like_search": "tongkuan.bench.keywords",  # the substring baseline over a SQLite catalog file
    "tongkuan_search": "tongkuan.bench.keywords",  # a catalog's own keyword search
    "any_term_ranking": "tongkuan.bench.keywords",  # keyword search without its all-words tier, inside
    # the models, as the quality benchmarks run them
    "resolve_model": "tongkuan.vision.registry",  # a shipped model by name (or a model.json)
    "model_spec": "tongkuan.bench.service",  # a model by name as the service opens it (library models too)
    "subject_finder": "tongkuan.bench.service",  # the shipped model that finds an embedder's subjects
    "ModelSpec": "tongkuan.vision.encoder",  # a model: its files, input size, dimension, labels
    "OnnxEncoder": "tongkuan.vision.encoder",  # one model run: embeddings, feature maps, logits
    "l2_normalise": "tongkuan.vision.encoder",  # rows scaled to unit length
    "preprocess": "tongkuan.vision.encoder",  # pictures as the model's input tensor
    "detect_regions": "tongkuan.vision.detect",  # subjects from a feature map, main first
    "find_inset": "tongkuan.vision.insets",  # a picture shown inside a picture, if any
    "quantize_model": "tongkuan.vision.quantize",  # an 8-bit copy, as `tongkuan quantize` makes it
    "Vision": "tongkuan.vision.pipeline",  # detect, classify and embed as the service does
    "Description": "tongkuan.vision.pipeline",  # one picture as Vision describes it
    "CONTEXT_WEIGHT": "tongkuan.vision.pipeline",  # the whole picture's share in a subject's embedding
    "cropped": "tongkuan.vision.pipeline",  # whether a region is embedded as a crop or whole
    "learn_whitening": "tongkuan.vision.whitening",  # what `tongkuan whiten` learns from products
    "Whitening": "tongkuan.vision.whitening",  # a learned whitening: a search space
    "ModelSpace": "tongkuan.domain.spaces",  # the model's own search space
    "fuse": "tongkuan.vision.classify",  # the category prior fused with the neighbours' vote
    "neighbour_vote": "tongkuan.vision.classify",  # the nearest catalog pictures' category vote
    "listings_whitening": "tongkuan.adapt.whitening",  # learned from near-duplicate listing pairs
    "mutual_pairs": "tongkuan.adapt.groups",  # near-duplicate pairs: each among the other's nearest
    "duplicated_share": "tongkuan.adapt.whitening",  # how much of a catalog is listed again
    "PAIR_NEIGHBOURS": "tongkuan.adapt.whitening",  # the neighbours a pair is found among
    "PAIR_COSINE": "tongkuan.adapt.whitening",  # the cosine a pair needs
    "purity": "tongkuan.adapt.groups",  # how well pseudo-groups match the true products
    # variants of the service's own steps, and steps reached alone
    "PoolingVision": "tongkuan.bench.variants",  # Vision pooling large subjects from the first pass
    "CheapFirstPass": "tongkuan.bench.variants",  # Vision finding subjects with a cheaper encoder
    "crop_share": "tongkuan.bench.variants",  # the smallest subject cropped to, while inside
    "unmarked_ingestion": "tongkuan.bench.service",  # ingestion not marked as background, inside
    "search_after_vision": "tongkuan.bench.service",  # the search step after vision, as a replica runs it
    "store_whitening": "tongkuan.bench.service",  # a whitening kept as a catalog's search space
    "index_files": "tongkuan.bench.service",  # the embedded index's files for a catalog
    # values
    "Box": "tongkuan.domain.boxes",  # a region of a picture
    "CATEGORIES": "tongkuan.domain.categories",  # the 14 service categories, in prior order
    "CATEGORY_BY_NAME": "tongkuan.domain.categories",  # a category by its name in the labels
    "CATEGORY_POSITION": "tongkuan.domain.categories",  # a category's position in a prior
    "Product": "tongkuan.domain.products",  # a product record
    "NewImage": "tongkuan.domain.products",  # a picture of a product, with its vector
    "SortOrder": "tongkuan.domain.products",  # how keyword results are sorted
    "IndexKind": "tongkuan.domain.indexes",  # the kinds of embedded vector index
    # the parts, for component benchmarks
    "Catalog": "tongkuan.catalog.store",  # what every catalog offers
    "SqliteCatalog": "tongkuan.catalog.sqlite",  # the embedded catalog
    "PostgresCatalog": "tongkuan.catalog.postgres",  # the PostgreSQL catalog (psycopg)
    "VectorIndex": "tongkuan.index.base",  # what every vector index offers
    "EmbeddedIndex": "tongkuan.index.embedded",  # the faiss index kept in the data directory
    "MilvusIndex": "tongkuan.index.milvus",  # the Milvus index
    "limit_threads": "tongkuan.index.faiss",  # faiss's threads per search
    "Searcher": "tongkuan.search.searcher",  # picture search over a catalog and an index
    "SearchOptions": "tongkuan.search.query",  # the searcher's settings
    "SearchQuery": "tongkuan.search.query",  # one search's parameters
    "Settings": "tongkuan.config",  # the service's settings
    "Engine": "tongkuan.engine",  # the service in process: ingest, search
    "SourceRecord": "tongkuan.ingest.readers",  # one product to ingest, with its pictures
    "TextMatch": "tongkuan.search.text_match",  # how the words read on a query move its products
    "query_tokens": "tongkuan.search.text_match",  # the words of lines read with confidence
    "TextReader": "tongkuan.vision.reading",  # the lines of text on a picture (PP-OCRv5)
    "READ_SIDE": "tongkuan.vision.reading",  # the longer side the reader sees a picture at
    "read_catalog_text": "tongkuan.engine.commands",  # `tongkuan read-text`, with any reader
    "AUTO_SAMPLE": "tongkuan.ingest.reading",  # pictures `auto` reads before it decides
    "AUTO_SHARE": "tongkuan.ingest.reading",  # of them showing words, for `auto` to go on reading
    "synthetic_fields": "tongkuan.sample",  # made-up shop fields, as the sample catalog has
    "CannotLearn": "tongkuan.errors",  # raised where a catalog cannot teach what was asked
    # tuning (torch)
    "Recipe": "tongkuan.adapt.recipe",  # how `tune` trains
    "LISTINGS": "tongkuan.adapt.recipe",  # what the listings variant changes of the recipe
    "tune": "tongkuan.adapt.training",  # fine-tune the shipped backbone on a catalog's groups
    "TuneResult": "tongkuan.adapt.progress",  # a tuned model and how it got there
    "TunedNet": "tongkuan.adapt.network",  # the network tuned
    "examples_from_files": "tongkuan.adapt.examples",  # tuning examples from files and products
    "load_tunable": "tongkuan.adapt.network",  # the shipped backbone, ready to tune
    "export_tuned_model": "tongkuan.adapt.export",  # a tuned network as a model the service runs
    "export_error": "tongkuan.adapt.export",  # how far an exported model strays from the network
    "worth_switching": "tongkuan.models.tuning",  # whether `tongkuan tune` would switch to a result
}

__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    """A name of `__all__`, imported from its module on first use."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})

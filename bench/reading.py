"""Reading the text on the product: what it adds to search, measured through the service.

    .venv/bin/python bench/reading.py [--data ../shared/data] [--limit N]
        [--shapes | --latency [--against REF] | --catalogs [SHAPES] [--per-product N] | --sides [SIDES]]

A catalog of the 81 grocery studio shots (one picture per product, read at ingest) is
searched with the held-out val photos (shoppers' photos of the same products), three ways:
pictures alone, and with the words read on the photo matched against the products' titles
and the words read on their pictures. Titles are the products' names, or uninformative
("product 17": words from the pictures alone). Each query picture is described and read
once; the text weight and confidence gate are swept over those. Then each is searched as
the service searches it ("as served": read only where the catalog pictures nearest it show
words, at the default weight and gate). The last line is JSON.

`--latency [--against REF]` measures instead the query latency through `tongkuan serve`
on the studio-shot catalog (names as titles): sequential V2 searches by `picUrl` of val
photos on which nothing confident is read and of photos on which words are, with reading
off, with it on as the code at git commit REF had it (optional), and on as now; two rounds.

`--catalogs [retailer,listings,small] [--per-product N]` measures instead what reading adds
to other shapes of catalog, read at ingestion: a retailer's (each product its studio shot
and N shoppers' photos, names as titles), listings (each of those photos a listing of its
own, with an uninformative title) and small pictures (five photos a product and the
queries squashed to 120 px, as in-store crops); R@1 of the val photos by kind, reading off
and on, and the ingest rate with reading.

`--sides [384,480,640]` measures instead what the reader's resolution does: R@1 as served
with the studio shots read at each longer side (the queries at the service's) and with the
queries read at each (the studio shots at the service's), and the time a picture takes.

`--shapes` measures instead what `TONGKUAN_READ_TEXT=auto` decides for catalogs of other
shapes: the first `AUTO_SAMPLE` pictures of each (spread over the data set) are read as
`auto` reads them, and the share that showed words decides whether it reads on. Where it
stops, the catalog searches as with reading off: it cannot lose a point.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TypeVar

from tongkuan.bench import (
    AUTO_SAMPLE,
    AUTO_SHARE,
    READ_SIDE,
    Engine,
    SearchQuery,
    Settings,
    SourceRecord,
    TextMatch,
    TextReader,
    query_tokens,
    read_catalog_text,
)

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
GATES = (0.6, 0.8, 0.9)


def products(root: Path) -> list[tuple[str, str, Path]]:
    """(itemId, name, studio shot) of each grocery product."""
    folder = root / "grocery_store"
    with (folder / "classes.csv").open(encoding="utf-8") as handle:
        return [
            (f"grocery-{int(r['class_id']):03d}", r["class_name"].replace("-", " "), folder / r["iconic_path"])
            for r in csv.DictReader(handle)
        ]


def catalog_records(root: Path, titles: str) -> list[SourceRecord]:
    """The studio-shot catalog's records, titled by the products' names or uninformatively
    ("product 17": words from the pictures alone)."""
    return [
        SourceRecord(f"{n}", {"itemId": item_id, "title": name if titles == "names" else f"product {n}"}, [str(shot)])
        for n, (item_id, name, shot) in enumerate(products(root))
    ]


def val_photos(root: Path, limit: int | None) -> list[tuple[str, Path, str]]:
    """(itemId, shopper's photo, Fruit|Vegetables|Packages) of each held-out photo."""
    folder = root / "grocery_store"
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        rows = [
            (f"grocery-{int(r['class_id']):03d}", folder / r["path"], r["top_level"])
            for r in csv.DictReader(handle)
            if r["split"] == "val"
        ]
    return spread(rows, limit) if limit else rows


def recall(
    engine: Engine, queries: list[tuple[str, Path, str]], pictures: list, lines: list, weight: float, gate: float
) -> tuple[float, float, float, dict[str, float]]:
    """R@1 over the queries, the share of them that showed words, R@1 among those, and R@1
    by kind of product (packaged goods carry text, fruit and vegetables mostly none)."""
    engine.searcher.matching = TextMatch(weight=weight, gate=gate)
    first = shown = with_words = 0
    by_kind: dict[str, list[bool]] = {}
    for (item_id, _, kind), picture, read_lines in zip(queries, pictures, lines, strict=True):
        words = tuple(query_tokens(read_lines, gate))
        hits = engine.search(picture, SearchQuery(limit=1, words=words)).hits
        right = bool(hits) and hits[0].product.item_id == item_id
        first += right
        by_kind.setdefault(kind, []).append(right)
        if words:
            shown += 1
            with_words += right
    n = len(queries)
    kinds = {kind: round(sum(right) / len(right), 3) for kind, right in sorted(by_kind.items())}
    return first / n, shown / n, with_words / max(1, shown), kinds


def as_served(engine: Engine, queries: list[tuple[str, Path, str]], pictures: list) -> dict[str, float]:
    """R@1 as the service answers, at the default weight and gate: it reads a query only where
    the catalog pictures nearest it show words; and the share of queries read."""
    engine.searcher.matching = TextMatch()
    first = read = 0
    for (item_id, _, _), picture in zip(queries, pictures, strict=True):
        found = engine.search(picture, SearchQuery(limit=1))
        first += bool(found.hits) and found.hits[0].product.item_id == item_id
        read += bool(found.words)
    return {"R@1": round(first / len(queries), 3), "queries with words read": round(read / len(queries), 3)}


def by_side(root: Path, sides: list[int], limit: int | None) -> dict[str, object]:
    """R@1 as served with the studio shots read at each longer side in `sides` (the queries
    at the service's), and with the queries read at each (the shots at the service's)."""
    queries = val_photos(root, limit)
    pairs = [(side, READ_SIDE) for side in sides] + [(READ_SIDE, side) for side in sides if side != READ_SIDE]
    summary: dict[str, object] = {"queries": len(queries)}
    pictures: list = []  # the queries decoded once, by the first engine
    for titles in ("names", "uninformative"):
        table: dict[str, object] = {}
        for shots_side in dict.fromkeys(shots for shots, _ in pairs):
            with tempfile.TemporaryDirectory() as work:
                unread = Settings(data_dir=Path(work), read_text="off", query_cache=4096)
                engine = Engine(unread)
                engine.ingester().ingest(catalog_records(root, titles))
                engine.close()
                threads = unread.models.threads
                started = time.perf_counter()
                read, worded = read_catalog_text(unread, progress=False, reader=TextReader(threads, shots_side))
                shot_ms = 1000 * (time.perf_counter() - started) / max(1, read)
                for query_side in [query for shots, query in pairs if shots == shots_side]:
                    engine = Engine(Settings(data_dir=Path(work), read_text="on", query_cache=4096))
                    reader = engine.searcher.reader = TextReader(threads, query_side)
                    pictures = pictures or [engine.decode(path.read_bytes()) for _, path, _ in queries]
                    timed = spread(pictures, 50)
                    started = time.perf_counter()
                    for picture in timed:
                        reader.read(picture.image)
                    query_ms = 1000 * (time.perf_counter() - started) / len(timed)
                    served = as_served(engine, queries, pictures)
                    engine.close()
                    row = {
                        **served, "shots with words": worded, "ms a shot": round(shot_ms),
                        "ms a query photo": round(query_ms),
                    }  # fmt: skip
                    table[f"shots at {shots_side} px, queries at {query_side} px"] = row
                    print(titles, shots_side, query_side, row, flush=True)
        summary[titles] = table
    return summary


def spread(items: list[T], count: int) -> list[T]:
    """`count` of `items`, spread evenly over them (data sets are sorted by class)."""
    return items[:: max(1, len(items) // count)][:count]


def shapes(root: Path) -> dict[str, list[Path]]:
    """The first pictures `auto` would read of catalogs of each shape."""
    grocery = root / "grocery_store"
    with (grocery / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kind = {r["class_id"]: r["top_level"] for r in rows if r["top_level"]}  # Fruit, Vegetables or Packages
    with (grocery / "classes.csv").open(encoding="utf-8") as handle:
        classes = list(csv.DictReader(handle))
    studio = {
        "packaged goods, studio shots": [
            grocery / c["iconic_path"] for c in classes if kind[c["class_id"]] == "Packages"
        ],
        "fruit and vegetables, studio shots": [
            grocery / c["iconic_path"] for c in classes if kind[c["class_id"]] != "Packages"
        ],
    }
    photos = [grocery / r["path"] for r in rows if r["split"] == "train"]
    clothing = root / "clothing_dataset"
    fashion = root / "fashion_product_images_small"
    with (clothing / "labels.csv").open(encoding="utf-8") as handle:
        worn = [clothing / r["path"] for r in csv.DictReader(handle)]
    with (fashion / "labels.csv").open(encoding="utf-8") as handle:
        shots = [fashion / r["path"] for r in csv.DictReader(handle)]
    return {
        **{name: spread(paths, AUTO_SAMPLE) for name, paths in studio.items()},
        "grocery shelves, shoppers' photos": spread(photos, AUTO_SAMPLE),
        "clothing, people's photos": spread(worn, AUTO_SAMPLE),
        "fashion catalog shots (60x80 px)": spread(shots, AUTO_SAMPLE),
    }


def auto_by_shape(root: Path) -> dict[str, object]:
    """What `auto` decides for each shape of catalog, from its first pictures."""
    from PIL import Image

    reader = TextReader(threads=2)
    out: dict[str, object] = {}
    for name, paths in shapes(root).items():
        started = time.perf_counter()
        worded = sum(bool(reader.read(Image.open(path).convert("RGB"))) for path in paths)
        out[name] = {
            "pictures read": len(paths),
            "with words": worded,
            "share with words": round(worded / len(paths), 3),
            # `auto` decides once it has read its sample: a smaller catalog is read whole
            "auto reads on past the sample": worded / len(paths) >= AUTO_SHARE,
            "ms per picture": round(1000 * (time.perf_counter() - started) / len(paths)),
        }
        print(name, out[name], flush=True)
    return out


SMALL_SIDE = 120  # small in-store crops, as bench/quality.py's small-picture table has them


def other_catalogs(root: Path, per_product: int, limit: int | None, wanted: list[str]) -> dict[str, object]:
    """R@1 by kind of the val photos, reading off and on, on catalogs of other shapes (those
    `wanted` of: retailer, listings, small), read at ingestion."""
    with (root / "grocery_store" / "labels.csv").open(encoding="utf-8") as handle:
        train = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    photos: dict[str, list[Path]] = {}
    for r in train:
        photos.setdefault(f"grocery-{int(r['class_id']):03d}", []).append(root / "grocery_store" / r["path"])
    named = products(root)
    small = Path(tempfile.mkdtemp(prefix="tongkuan-small-"))
    shapes = {  # name: (catalog records, the side pictures and queries are shrunk to, or None)
        "retailer": (f"studio shot + {per_product} photos a product, names", None, [
            SourceRecord(item_id, {"itemId": item_id, "title": name}, [str(shot), *map(str, spread(photos[item_id], per_product))])
            for item_id, name, shot in named
        ]),
        "listings": (f"{per_product} photos a product, a listing each, uninformative titles", None, [
            SourceRecord(f"{item_id}/{n}", {"itemId": f"{item_id}/{n}", "title": f"listing {item_id[-3:]}{n}"}, [str(path)])
            for item_id, _, _ in named
            for n, path in enumerate(spread(photos[item_id], per_product))
        ]),
        "small": (f"5 photos a product at {SMALL_SIDE}x{SMALL_SIDE} px, queries too, uninformative titles", SMALL_SIDE, [
            SourceRecord(item_id, {"itemId": item_id, "title": f"product {n}"}, [str(shrunk(path, small)) for path in spread(photos[item_id], 5)])
            for n, (item_id, _, _) in enumerate(named)
        ]),
    }  # fmt: skip
    queries = val_photos(root, limit)
    out: dict[str, object] = {"queries": len(queries)}
    for shape in wanted:
        described, side, records = shapes[shape]
        with tempfile.TemporaryDirectory() as work:
            engine = Engine(Settings(data_dir=Path(work), read_text="on"))
            started = time.perf_counter()
            report = engine.ingester().ingest(records)
            ingest_s = time.perf_counter() - started
            read, worded = engine.catalog.reading_counts()
            right: dict[str, dict[str, list[bool]]] = {"reading off": {}, "reading on": {}}
            shown = 0
            for item_id, path, kind in queries:
                picture = engine.decode((shrunk(path, small) if side else path).read_bytes())
                for name, query in (
                    ("reading off", SearchQuery(limit=1, read_text=False)),
                    ("reading on", SearchQuery(limit=1)),
                ):
                    found = engine.search(picture, query)
                    hit = bool(found.hits) and found.hits[0].product.item_id.split("/")[0] == item_id
                    right[name].setdefault(kind, []).append(hit)
                    shown += bool(found.words)
            engine.close()
        measured: dict[str, object] = {
            "catalog": described, "pictures": read, "with words": worded, "failures": len(report.failures),
            "ingest pictures/s with reading": round(read / ingest_s, 1), "queries with words read": round(shown / len(queries), 3),
        }  # fmt: skip
        for name, by_kind in right.items():
            every = [hit for hits in by_kind.values() for hit in hits]
            measured[name] = {"R@1": round(sum(every) / len(every), 3)} | {
                kind: round(sum(hits) / len(hits), 3) for kind, hits in sorted(by_kind.items())
            }
        out[shape] = measured
        print(shape, measured, flush=True)
    shutil.rmtree(small, ignore_errors=True)
    return out


def shrunk(path: Path, folder: Path) -> Path:
    """A copy of the picture at `path` squashed to SMALL_SIDE px square, in `folder`."""
    import hashlib

    from PIL import Image

    target = folder / f"{hashlib.sha1(str(path).encode()).hexdigest()}.png"
    if not target.exists():
        Image.open(path).convert("RGB").resize((SMALL_SIDE, SMALL_SIDE)).save(target)
    return target


def latency(root: Path, against: str | None) -> dict[str, object]:
    """Sequential p50 of photos without and with text, reading off and on (and on at `against`)."""
    import httpx
    import numpy as np
    from perf import APP, Server, checkout  # bench/perf.py

    from tongkuan.bench import FileServer, free_port

    work = Path(tempfile.mkdtemp(prefix="tongkuan-reading-"))
    engine = Engine(Settings(data_dir=work / "data", read_text="on"))
    records = [
        SourceRecord(f"{n}", {"itemId": item_id, "title": name}, [str(shot)])
        for n, (item_id, name, shot) in enumerate(products(root))
    ]
    engine.ingester().ingest(records)
    assert engine.searcher.reader is not None
    showing: dict[bool, list[Path]] = {True: [], False: []}
    for _, path, _ in val_photos(root, None):  # what the reader reads on each, confidently
        lines = [(t.text, t.confidence) for t in engine.searcher.reader.read(engine.decode(path.read_bytes()).image)]
        showing[bool(query_tokens(lines, TextMatch().gate))].append(path)
    engine.close()
    photos = {"showing no text": spread(showing[False], 50), "showing text": spread(showing[True], 50)}
    runs = [("off", {"TONGKUAN_READ_TEXT": "off"}), ("on", {"TONGKUAN_READ_TEXT": "on"})]
    if against:
        runs.insert(1, (f"on at {against}", {"TONGKUAN_READ_TEXT": "on", "PYTHONPATH": str(checkout(against, work))}))
    files = FileServer(root)
    files.start()
    out: dict[str, object] = {}
    try:
        for round_ in (1, 2):
            for name, env in runs:
                server = Server(work / "data", free_port(), env)
                server.start()
                base = f"http://127.0.0.1:{server.port}/taobao/image-search/url"
                p50 = {}
                with httpx.Client(timeout=60) as http, contextlib.ExitStack() as stack:
                    stack.callback(server.stop)
                    for kind, paths in photos.items():
                        urls = [
                            httpx.URL(base, params={"appKey": APP[0], "appSecret": APP[1], "picUrl": files.url(str(p.relative_to(root)))})
                            for p in paths
                        ]  # fmt: skip
                        for url in urls[:3]:
                            http.get(url)  # warm up
                        taken = []
                        for url in urls:
                            started = time.perf_counter()
                            http.get(url).raise_for_status()
                            taken.append(time.perf_counter() - started)
                        p50[kind] = round(1000 * float(np.median(taken)), 1)
                out[f"round {round_}: {name}, p50 ms"] = p50
                print(round_, name, p50, flush=True)
    finally:
        files.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None, help="Val photos to search (default: all).")
    parser.add_argument("--shapes", action="store_true", help="What auto decides for other catalogs, instead.")
    parser.add_argument("--latency", action="store_true", help="Query latency with reading off and on, instead.")
    parser.add_argument(
        "--against", default=None, metavar="REF", help="With --latency: also reading on at this commit."
    )
    parser.add_argument(
        "--catalogs", nargs="?", const="retailer,listings,small", default=None,
        help="Other shapes of catalog instead (default: retailer,listings,small).",
    )  # fmt: skip
    parser.add_argument("--per-product", type=int, default=10, help="With --catalogs: shoppers' photos a product.")
    parser.add_argument(
        "--sides", nargs="?", const="384,480,640", default=None,
        help="The reader's resolution instead: longer sides to read at (default: 384,480,640).",
    )  # fmt: skip
    args = parser.parse_args()
    if args.sides:
        print(json.dumps(by_side(args.data, [int(side) for side in args.sides.split(",")], args.limit)))
        return
    if args.catalogs:
        print(json.dumps(other_catalogs(args.data, args.per_product, args.limit, args.catalogs.split(","))))
        return
    if args.latency:
        print(json.dumps(latency(args.data, args.against)))
        return
    if args.shapes:
        print(json.dumps(auto_by_shape(args.data)))
        return
    queries = val_photos(args.data, args.limit)
    summary: dict[str, object] = {"queries": len(queries)}
    for titles in ("names", "uninformative"):
        with tempfile.TemporaryDirectory() as work:
            engine = Engine(Settings(data_dir=Path(work), read_text="on", query_cache=4096))
            started = time.perf_counter()
            report = engine.ingester().ingest(catalog_records(args.data, titles))
            ingest_s = time.perf_counter() - started
            read, worded = engine.catalog.reading_counts()
            engine.close()
            engine = Engine(Settings(data_dir=Path(work), read_text="on", query_cache=4096))
            assert engine.searcher.reader is not None
            lines, pictures, read_s = [], [], 0.0
            for _, path, _ in queries:
                picture = engine.decode(path.read_bytes())
                pictures.append(picture)
                started = time.perf_counter()
                lines.append([(t.text, t.confidence) for t in engine.searcher.reader.read(picture.image)])
                read_s += time.perf_counter() - started

            table = {}
            for gate in GATES:
                for weight in WEIGHTS:
                    r1, share, r1_words, kinds = recall(engine, queries, pictures, lines, weight, gate)
                    table[f"w={weight} gate={gate}"] = {
                        "R@1": round(r1, 3),
                        "read": round(share, 3),
                        "R@1 where read": round(r1_words, 3),
                        "R@1 by kind": kinds,
                    }
                    print(titles, gate, weight, table[f"w={weight} gate={gate}"], flush=True)
            served = as_served(engine, queries, pictures)
            print(titles, "as served", served, flush=True)
            engine.close()
            summary[titles] = {
                "as served": served,
                "catalog pictures read": read, "with words": worded, "ingest s": round(ingest_s, 1),
                "failures": len(report.failures), "read ms per query": round(1000 * read_s / len(queries)), "R@1": table,
            }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

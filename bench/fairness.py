"""Searches while an import embeds pictures in the same process: does a query wait behind it?

    python bench/fairness.py [--model efficientnet-lite2] [--queries 40] [--pictures 320] [--read-text]

One engine over the grocery iconic shots. A shopper's photo is searched one query after
another (decode, detect, embed, rank: `Engine.search`), three times in the same process:
with nothing else running (the baseline); while an ingester embeds `--pictures` new
pictures in batches of 16 as the service's import jobs do, with searches first and
background inference a few pictures at a time (the default); and the same with the
ingestion's inference unmarked, as every inference was before (a search waits for a whole
16-picture batch). With `--read-text` the imports and the searches also read the text on
each picture (`TONGKUAN_READ_TEXT=on`). The searches never reuse a picture's description
(the query cache is off: the photos come round again). Prints one JSON line: query p50/p95/max for each, the ratio to the
baseline, and the ingestion's pictures a second in both import runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

from perf import latency_summary  # bench/perf.py

from tongkuan.bench import Engine, SearchQuery, Settings, SourceRecord, read_rows, unmarked_ingestion

REPO = Path(__file__).resolve().parent.parent


def latencies(engine: Engine, photos: list[bytes], stop: threading.Event | None = None) -> list[float]:
    times = []
    for data in photos:
        started = time.perf_counter()
        engine.search(engine.decode(data), SearchQuery(limit=10))
        times.append(time.perf_counter() - started)
        if stop is not None and stop.is_set():
            break
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {**latency_summary(times), "queries": len(times)}


def during_import(engine: Engine, photos: list[bytes], records: list[SourceRecord]) -> dict[str, object]:
    """Query latencies while `records` are ingested in another thread, and the import's rate."""
    done = threading.Event()
    rate: list[float] = []

    def ingest() -> None:
        started = time.perf_counter()
        report = engine.ingester(batch_size=16).ingest(records)
        rate.append(report.images_embedded / (time.perf_counter() - started))
        done.set()

    worker = threading.Thread(target=ingest)
    worker.start()
    time.sleep(0.5)  # the import under way
    times = latencies(engine, photos * 10, stop=done)
    worker.join()
    return {"queries": summary(times), "import_pictures_per_s": round(rate[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--pictures", type=int, default=320)
    parser.add_argument(
        "--read-text", action="store_true", help="The imports and the searches read the text on the pictures too."
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tongkuan-fairness-"))
    rows = read_rows(args.data / "grocery_store" / "labels.csv")
    root = args.data / "grocery_store"
    iconic = [root / r["path"] for r in rows if r["split"] == "catalog"]
    train = [root / r["path"] for r in rows if r["split"] == "train"]
    photos = [(root / r["path"]).read_bytes() for r in rows if r["split"] == "val"][: args.queries]
    # every search describes its picture (the photos come round again: a cache would answer)
    reading = "on" if args.read_text else "off"
    engine = Engine(Settings(data_dir=work / "data", model=args.model, read_text=reading, query_cache=0))
    try:
        engine.ingester().ingest([SourceRecord("iconic", {"itemId": p.stem}, [str(p)]) for p in iconic])
        latencies(engine, photos[:3])  # warm up
        result: dict[str, object] = {"model": args.model, "baseline": summary(latencies(engine, photos))}
        runs = {"searches_first": train[: args.pictures // 2], "unmarked": train[args.pictures // 2 : args.pictures]}
        for name, paths in runs.items():
            records = [SourceRecord(name, {"itemId": f"{name}-{p.stem}"}, [str(p)]) for p in paths]
            with unmarked_ingestion() if name == "unmarked" else contextlib.nullcontext():
                result[name] = during_import(engine, photos, records)
        base = result["baseline"]["p50_ms"]  # type: ignore[index]
        for name in runs:
            run = result[name]["queries"]  # type: ignore[index]
            run["p50_ratio_to_baseline"] = round(run["p50_ms"] / base, 2)
            run["p95_ratio_to_baseline"] = round(run["p95_ms"] / result["baseline"]["p95_ms"], 2)  # type: ignore[index]
        print(json.dumps(result))
    finally:
        engine.close()


if __name__ == "__main__":
    main()

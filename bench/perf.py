"""Speed and memory, each figure next to a baseline measured in the same run.

    python bench/perf.py [--data ../shared/data] [--sizes 10000,100000]
                         [--index-sizes 100000,1000000] [--queries 100] [--seconds 15]

The last line printed is a JSON summary. Stages:
- bare model: the floor, a bare pass (ONNX Runtime with its default options, 2 threads, the
  input tensor made beforehand), and the service's own pass (resize and inference slot
  included), the query's vision work (detect on the whole picture, embed the main region,
  the inset search beside it) and the inset search alone, at batch 1, on the same pictures
  the HTTP queries use;
- session options: a bare pass under each ONNX Runtime option the service could choose
  (spinning, threads, graph optimisation, memory arena, execution mode) against its own;
- ingestion: real pictures through `Ingester` (read, decode, batched model, SQLite) against
  the bare batched model on the same decoded pictures;
- catalogs of each size: the real ingested pictures plus SYNTHETIC products whose vectors are
  drawn from the real embedding distribution (pairs of real vectors mixed, plus noise) --
  labelled as such; then `tongkuan serve` as a subprocess: cold start, index bytes per image,
  100 sequential queries through HTTP (p50/p95/p99, and the time of each stage from the
  service's /metrics), the next four pages of 20 of them, throughput with 8 and 32 clients
  from a separate load-generator process (the query cache off there: every search should
  run the model). The service runs as by default (a learned whitening in the catalog,
  learned from the ingested photos grouped by product; inset search on) and as a baseline,
  one after the other: with `--against REF`, the service as it was at git
  commit REF on the same catalog (its source checked out into the work folder), else this
  code without the whitening and the inset search. Each reports its end-to-end p50, each
  stage's mean and its 8- and 32-client throughput against two bare passes measured in the
  same run (the least a query's vision needs);
- vector index alone at each index size: exact flat search (the baseline) against HNSW,
  HNSW over 8-bit codes (the service default) and a compressed IVF index: build time (all
  cores), bytes per vector, p50 latency (one thread), recall@10.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tongkuan.bench import (
    CannotLearn,
    Engine,
    FileServer,
    NewImage,
    OnnxEncoder,
    Product,
    Settings,
    SourceRecord,
    SqliteCatalog,
    Vision,
    Whitening,
    find_inset,
    free_port,
    index_files,
    learn_whitening,
    preprocess,
    read_rows,
    resolve_model,
    store_whitening,
    synthetic_fields,
)

REPO = Path(__file__).resolve().parent.parent
APP = ("bench", "bench-secret")
MODEL = "efficientnet-lite2"
PAGES = "next pages of the same picture (pageNo 10-40)"
BARE = "bare pass (ONNX Runtime defaults, input ready)"


def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = np.array(values_s) * 1000
    return {f"p{p}_ms": round(float(np.percentile(ms, p)), 2) for p in (50, 95, 99)}


def latency_summary(values_s: list[float]) -> dict[str, float]:
    """p50, p95 and the slowest, in milliseconds: what a user waiting on one request sees."""
    ms = np.asarray(values_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def bare_model(vision: Vision, images: list[Image.Image]) -> dict[str, object]:
    """The floor a query is measured against, and the service's own vision work, in process:
    a bare pass is ONNX Runtime with its default options on a tensor already made (2 threads,
    as the service runs), a service pass adds the resize and the inference slot."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = vision.encoder.threads
    bare = ort.InferenceSession(str(vision.spec.path), options, providers=["CPUExecutionProvider"])
    tensors = [preprocess([image], vision.spec) for image in images]
    vision.describe(images[:2])  # warm up
    for tensor in tensors[:5]:
        bare.run(None, {vision.spec.input_name: tensor})
    passes, forward, paired, query, insets = [], [], [], [], []
    for tensor in tensors:  # alone: its idle workers spin, and would slow the service's passes
        started = time.perf_counter()
        bare.run(None, {vision.spec.input_name: tensor})
        passes.append(time.perf_counter() - started)
    del bare
    for image in images:
        started = time.perf_counter()
        vision.encoder.run([image])
        forward.append(time.perf_counter() - started)
        started = time.perf_counter()
        vision.encoder.run([image, image])  # what batching two requests' passes would gain
        paired.append((time.perf_counter() - started) / 2)
        started = time.perf_counter()
        vision.describe([image], insets=True)
        query.append(time.perf_counter() - started)
        started = time.perf_counter()
        find_inset(image)
        insets.append(time.perf_counter() - started)
    return {
        BARE: percentiles(passes),
        "one forward pass": percentiles(forward),
        "a forward pass in a batch of two, per picture": percentiles(paired),
        "query vision (detect + embed region, inset search beside)": percentiles(query),
        "inset search alone": percentiles(insets),
    }


def session_options(vision: Vision, images: list[Image.Image]) -> dict[str, object]:
    """A bare pass's p50 under each ONNX Runtime option the service could choose, one block
    each (a spinning session's idle workers would slow whatever runs right after it); the
    service's own choice, first, is the baseline of the ratios."""
    import onnxruntime as ort

    def options(
        spin: bool = False, threads: int = 2, level: str = "ORT_ENABLE_ALL", arena: bool = True, parallel: bool = False
    ) -> Any:
        chosen = ort.SessionOptions()
        chosen.intra_op_num_threads = threads
        chosen.inter_op_num_threads = 1
        chosen.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        chosen.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        chosen.enable_cpu_mem_arena = arena
        chosen.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        return chosen

    variants = {
        "the service's (2 threads, no spinning, full optimisation, arena, sequential)": options(),
        "spinning": options(spin=True),
        "one thread": options(threads=1),
        "basic graph optimisation": options(level="ORT_ENABLE_BASIC"),
        "no memory arena": options(arena=False),
        "parallel execution": options(parallel=True),
    }
    tensors = [preprocess([image], vision.spec) for image in images[:50]]
    out: dict[str, object] = {}
    base = 0.0
    for name, chosen in variants.items():
        session = ort.InferenceSession(str(vision.spec.path), chosen, providers=["CPUExecutionProvider"])
        for tensor in tensors[:5]:
            session.run(None, {vision.spec.input_name: tensor})
        times = []
        for tensor in tensors:
            started = time.perf_counter()
            session.run(None, {vision.spec.input_name: tensor})
            times.append(time.perf_counter() - started)
        del session
        p50 = float(np.median(times)) * 1000
        base = base or p50
        out[name] = {"p50_ms": round(p50, 2), "against the service's": round(p50 / base, 3)}
    return out


def ingestion(engine: Engine, paths: list[Path]) -> dict[str, object]:
    records = [
        SourceRecord(
            str(p), {"itemId": f"real-{i}", "title": p.stem, **synthetic_fields(f"real-{i}", "general")}, [str(p)]
        )
        for i, p in enumerate(paths)
    ]
    started = time.perf_counter()
    report = engine.ingester(batch_size=16).ingest(records)
    ingest_s = time.perf_counter() - started
    images = [Image.open(p).convert("RGB") for p in paths]
    started = time.perf_counter()
    for start in range(0, len(images), 16):
        engine.vision.describe(images[start : start + 16])
    model_s = time.perf_counter() - started
    return {
        "images": len(paths),
        "failures": len(report.failures),
        "ingest images/s": round(len(paths) / ingest_s, 1),
        "bare batched model images/s": round(len(paths) / model_s, 1),
        "ratio": round(model_s / ingest_s, 3),
    }


def synthetic_vectors(real: NDArray[np.float32], count: int, seed: int) -> NDArray[np.float32]:
    """SYNTHETIC: mixtures of two real vectors plus noise at the real per-dimension spread."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(real), count), rng.integers(0, len(real), count)
    mix = rng.uniform(0.3, 0.7, (count, 1)).astype(np.float32)
    noise = rng.standard_normal((count, real.shape[1])).astype(np.float32) * real.std(axis=0) * 0.5
    vectors = mix * real[a] + (1 - mix) * real[b] + noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def grow_catalog(catalog: SqliteCatalog, real: NDArray[np.float32], target: int) -> None:
    have = catalog.count()[1]
    step = 2000
    for start in range(have, target, step):
        n = min(step, target - start)
        vectors = synthetic_vectors(real, n, seed=start)
        items = []
        for i in range(n):
            item_id = f"synthetic-{start + i}"
            product = Product(item_id, f"synthetic product {start + i}", shop_title="bench")
            items.append((product, [NewImage(f"{start + i:064x}", "http://example.com/x.jpg", vectors[i])]))
        catalog.upsert_many(items)


def iconic_catalog(data: Path, work: Path, model: str) -> tuple[Path, list[dict[str, str]]]:
    """A data directory holding the grocery iconic shots, ingested by `tongkuan ingest` in its
    own process; returns it and the grocery label rows."""
    data_dir = work / "data"
    rows = read_rows(data / "grocery_store" / "labels.csv")
    iconic = [data / "grocery_store" / r["path"] for r in rows if r["split"] == "catalog"]
    source = work / "items.jsonl"
    source.write_text("\n".join(json.dumps({"itemId": p.stem, "images": [str(p)]}) for p in iconic))
    subprocess.run(
        [sys.executable, "-m", "tongkuan.cli", "ingest", str(source), "--data-dir", str(data_dir),
         "--model", model, "--ack"],
        check=True, capture_output=True,
    )  # fmt: skip
    return data_dir, rows


class Server:
    """`tongkuan serve` in its own process; the query cache off unless `query_cache` (then as
    the service has it by default)."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None, query_cache: bool = False) -> None:
        self.data_dir, self.port, self.env, self.query_cache = data_dir, port, env or {}, query_cache
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = {
            **os.environ,
            "TONGKUAN_APPS": f"{APP[0]}:{APP[1]}",
            "TONGKUAN_ALLOW_LOOPBACK_FETCH": "1",
            "TONGKUAN_RATE_LIMIT_QPS": "0",
            # load generators cycle over a few dozen pictures: without this, every search after
            # the first round would reuse its picture's description instead of running the model
            "TONGKUAN_QUERY_CACHE": "0",
            **self.env,
        }
        if self.query_cache:
            del env["TONGKUAN_QUERY_CACHE"]  # the service's own default
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tongkuan.cli", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.02)

    def rss_mb(self) -> float:
        """Resident memory now."""
        return self._status_mb("VmRSS")

    def peak_rss_mb(self) -> float:
        """The most resident memory the process has had (its high-water mark)."""
        return self._status_mb("VmHWM")

    def _status_mb(self, field: str) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)


def serve_and_measure(
    data_dir: Path,
    urls: list[str],
    seconds: float,
    port: int,
    floor_ms: float,
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    """`tongkuan serve` on `data_dir`, measured; `floor_ms` is two bare passes of the model,
    the least a query's vision needs, which each figure is also given against."""
    server = Server(data_dir, port, env)
    first_start = server.start()  # builds the index from SQLite if no index file is current
    server.stop()
    # sequential queries (each a new picture) and next pages with the service's own defaults;
    # the load after them with every search describing its picture
    cached = Server(data_dir, port, {**(env or {}), "TONGKUAN_METRICS": "1"}, query_cache=True)
    cold_start = cached.start()
    base = f"http://127.0.0.1:{port}/taobao/image-search/url"
    query_urls = [str(httpx.URL(base, params={"appKey": APP[0], "appSecret": APP[1], "picUrl": u})) for u in urls]
    with httpx.Client(timeout=60) as http:
        http.get(query_urls[0])
        latencies, errors = [], 0
        before = stage_seconds(http, port)
        for url in query_urls:
            started = time.perf_counter()
            body = http.get(url).json()
            latencies.append(time.perf_counter() - started)
            errors += body["code"] != 200
        after = stage_seconds(http, port)
        stages = {stage: round((after[stage] - before.get(stage, 0.0)) / len(latencies) * 1000, 2) for stage in after}
        stages["the rest (HTTP, parameters, JSON)"] = round(
            (sum(latencies) - sum(after.values()) + sum(before.values())) / len(latencies) * 1000, 2
        )
        # a shopper reading on: the next pages of a search by the same picture
        next_pages = []
        for url in query_urls[:20]:
            for page in range(1, 5):
                started = time.perf_counter()
                body = http.get(f"{url}&pageNo={10 * page}&pageSize=10").json()
                next_pages.append(time.perf_counter() - started)
                errors += body["code"] != 200
    cached.stop()
    server.start()
    url_file = data_dir / "urls.txt"
    url_file.write_text("\n".join(query_urls))
    load = []
    for concurrency in (8, 32):
        out = subprocess.run(
            [sys.executable, str(REPO / "bench" / "load.py"), str(url_file), "--concurrency", str(concurrency),
             "--seconds", str(seconds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        load.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rss = server.rss_mb()
    server.stop()
    for run in load:  # what two bare passes a query would allow, the cores doing nothing else
        run["QPS / two-bare-pass rate"] = round(run["qps"] * floor_ms / 1000, 3)
    space = SqliteCatalog(data_dir / "catalog.db", MODEL, 1280)
    files = index_files(data_dir, space)
    space.close()
    images = SqliteCatalog(data_dir / "catalog.db", MODEL, 1280).count()[1]
    return {
        "catalog images": images,
        "first start s (index rebuilt from SQLite)": round(first_start, 2),
        "cold start s": round(cold_start, 2),
        "index bytes per image": round(sum(f.stat().st_size for f in files) / images),
        "sequential queries": {"n": len(latencies), "errors": errors, **percentiles(latencies)},
        "sequential p50 / two bare passes": round(float(np.median(latencies)) * 1000 / floor_ms, 2),
        "sequential stages, mean ms (from /metrics)": stages,
        "sequential stages, share of two bare passes": {k: round(v / floor_ms, 3) for k, v in stages.items()},
        PAGES: {"n": len(next_pages), **percentiles(next_pages)},
        "load": load,
        "server RSS MB": rss,
    }


def stage_seconds(http: httpx.Client, port: int) -> dict[str, float]:
    """Seconds the service has spent in each stage of its picture searches so far."""
    text = http.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tongkuan_search_stage_seconds_sum"
    }


def checkout(commit: str, work: Path) -> Path:
    """The package's source as it was at `commit`, extracted under `work`; returns the folder
    to put on PYTHONPATH so that `python -m tongkuan.cli` runs that code."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit], check=True, capture_output=True, text=True)
    folder = work / f"source-{sha.stdout.strip()}"
    if not folder.exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True)
        folder.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def against(baseline: dict[str, object], result: dict[str, object]) -> dict[str, float]:
    """The service's figures as multiples of the baseline's."""
    before, after = baseline["sequential queries"], result["sequential queries"]
    load_before, load_after = baseline["load"], result["load"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert isinstance(load_before, list) and isinstance(load_after, list)
    return {
        "p50": round(after["p50_ms"] / before["p50_ms"], 3),
        "p99": round(after["p99_ms"] / before["p99_ms"], 3),
        "next pages p50": round(
            result[PAGES]["p50_ms"] / baseline[PAGES]["p50_ms"],  # type: ignore[index]
            3,
        ),
        **{
            f"QPS, {b['concurrency']} clients": round(a["qps"] / b["qps"], 3)
            for b, a in zip(load_before, load_after, strict=True)
        },
    }


def index_bench(real: NDArray[np.float32], size: int, queries: int = 200) -> dict[str, object]:
    base = synthetic_vectors(real, size, seed=size)
    q = synthetic_vectors(real, queries, seed=size + 1)
    results: dict[str, object] = {"vectors": size, "dim": base.shape[1], "SYNTHETIC": True}
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    _, truth = flat.search(q, 10)
    for name, factory, tune in (
        ("Flat (exact, baseline)", "Flat", None),
        ("HNSW32", "HNSW32", ("efSearch", 64)),
        ("HNSW32,SQ8 (service default)", "HNSW32,SQ8", ("efSearch", 128)),
        ("PCA256,IVF1024,SQ8", "PCA256,IVF1024,SQ8", ("nprobe", 16)),
    ):
        if factory == "HNSW32" and size > 200_000:
            results[name] = "skipped above 200k vectors: build time too long for this benchmark's budget"
            continue
        started = time.perf_counter()
        index = flat if factory == "Flat" else faiss.index_factory(base.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if factory != "Flat":
            faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core, query on one
            index.train(base[: min(size, 100_000)])
            index.add(base)
            faiss.omp_set_num_threads(1)
        build = time.perf_counter() - started
        if tune:
            faiss.ParameterSpace().set_index_parameter(index, *tune)
        latencies = []
        found = np.empty((queries, 10), dtype=np.int64)
        for i in range(queries):
            started = time.perf_counter()
            _, ids = index.search(q[i : i + 1], 10)
            latencies.append(time.perf_counter() - started)
            found[i] = ids[0]
        recall = np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(queries)])
        results[name] = {
            "build s": round(build, 1),
            "bytes per vector": round(faiss.serialize_index(index).nbytes / size),
            "p50 ms": round(float(np.median(latencies)) * 1000, 3),
            "recall@10": round(float(recall), 4),
            **({tune[0]: tune[1]} if tune else {}),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-perf")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--index-sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ingest", type=int, default=1000, help="Real pictures ingested.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Duration of each load run.")
    parser.add_argument(
        "--against",
        default=None,
        metavar="REF",
        help="A git commit whose service is the baseline, on the same catalog in the same run "
        "(default: this code without the whitening and the inset search).",
    )
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    summary: dict[str, object] = {"machine": f"{os.cpu_count()} cores", "model": MODEL}
    args.work.mkdir(parents=True, exist_ok=True)
    vision = Vision(OnnxEncoder(resolve_model(MODEL, args.work)))
    grocery = read_rows(args.data / "grocery_store" / "labels.csv")
    val = [args.data / "grocery_store" / r["path"] for r in grocery if r["split"] == "val"][: args.queries]
    train = [args.data / "grocery_store" / r["path"] for r in grocery if r["split"] == "train"][: args.ingest]

    summary["bare model"] = bare_model(vision, [Image.open(p).convert("RGB") for p in val])
    floor_ms = 2 * summary["bare model"][BARE]["p50_ms"]  # type: ignore[index]
    print(json.dumps(summary["bare model"]), file=sys.stderr)
    summary["session options"] = session_options(vision, [Image.open(p).convert("RGB") for p in val])
    print(json.dumps(summary["session options"]), file=sys.stderr)

    data_dir = args.work / f"catalog-{time.time_ns()}"
    (data_dir / "models").parent.mkdir(parents=True)
    (data_dir / "models").symlink_to(args.work / "models")
    engine = Engine(Settings(data_dir=data_dir, model=MODEL))
    summary["ingestion"] = ingestion(engine, train)
    print(json.dumps(summary["ingestion"]), file=sys.stderr)
    real = engine.catalog.vectors()[1]
    engine.close()

    files = FileServer(args.data)
    files.start()
    urls = [files.url(str(p.relative_to(args.data))) for p in val]
    catalog = SqliteCatalog(data_dir / "catalog.db", MODEL, 1280)
    # the search space the default service uses once `tongkuan whiten` has run: learned here
    # from the ingested shoppers' photos grouped by their product
    labels = [r["class_id"] for r in grocery if r["split"] == "train"][: args.ingest]
    try:
        whitening: Whitening | None = learn_whitening(real, np.array(labels), MODEL)
    except CannotLearn as exc:  # a smoke run ingests too few pictures
        whitening = None
        print(f"no whitening: {exc}", file=sys.stderr)
    summary["whitening"] = "none" if whitening is None else f"{whitening.dim} dimensions"
    for size in (int(s) for s in args.sizes.split(",") if s):
        grow_catalog(catalog, real, size)
        if args.against:  # the service as it was at that commit, on the same catalog
            store_whitening(catalog, whitening)
            env = {"PYTHONPATH": str(checkout(args.against, args.work))}
            name = f"baseline: the service at {args.against}"
        else:  # as the service answered before learned whitening and inset search
            store_whitening(catalog, None)
            env, name = {"TONGKUAN_FIND_INSETS": "0"}, "baseline: no whitening, no inset search"
        before = serve_and_measure(data_dir, urls, args.seconds, free_port(), floor_ms, env)
        store_whitening(catalog, whitening)
        result = serve_and_measure(data_dir, urls, args.seconds, free_port(), floor_ms)
        result[name] = before
        result["against the baseline"] = against(before, result)
        summary[f"service at {size} images"] = result
        print(json.dumps(result), file=sys.stderr)
    files.stop()

    for size in (int(s) for s in args.index_sizes.split(",") if s):
        summary[f"index at {size}"] = index_bench(real, size)
        print(json.dumps(summary[f"index at {size}"]), file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()

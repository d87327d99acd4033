"""Where a query's time goes in `tongkuan serve` under load: py-spy's samples, by stage.

    python bench/stages.py [--model efficientnet-lite2] [--seconds 20] [--clients 8] [--against REF]

Needs py-spy (`pip install py-spy`; it reads the server's stacks from outside, so the
process must be one this user may trace). Builds a catalog of the grocery iconic shots,
starts the service in its own process, loads it with `bench/load.py` (V2 searches by
`picUrl` of grocery val photos, served from 127.0.0.1) while py-spy samples every thread of
the server that is not idle, then sorts each sample into the stage its innermost known
frame belongs to (of the service's own code first). `--against REF` profiles the service as
it was at git commit REF instead. Prints the share of samples per stage and the 15 hottest
functions, then one JSON line with both and the load's QPS and latency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from perf import APP, Server, checkout, free_port, iconic_catalog  # bench/perf.py

from tongkuan.bench import FileServer

REPO = Path(__file__).resolve().parent.parent

# (stage, substrings of a frame "function (file:line)"), tried innermost frame first
STAGES = [
    ("inference (ONNX Runtime)", ("onnxruntime",)),
    ("preprocess (resize, normalise)", ("vision/encoder.py",)),
    ("subject detection", ("vision/detect.py",)),
    ("inset search", ("vision/insets.py",)),
    ("decode", ("images/decode.py", "PIL/")),
    ("fetch", ("images/fetch.py", "httpcore/")),
    ("vector index", ("tongkuan/index/", "faiss")),
    ("catalog reads and ranking", ("tongkuan/catalog/", "search/ranking.py", "sqlite3")),
    ("search (other)", ("tongkuan/search/", "tongkuan/vision/")),
    ("answer (JSON, envelope)", ("api/wire.py", "json/", "api/envelope.py")),
    ("HTTP server and framework", ("uvicorn", "starlette", "fastapi", "anyio", "h11", "asyncio")),
]


# Frames of the service's own code, and ONNX Runtime's: the innermost of them says which stage
# asked for the work (Pillow's resize is preprocessing when the encoder calls it and inset
# search when the inset search does); library marks decide only where none of them does.
OWN = ("tongkuan/", "onnxruntime")


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    if any("_take_slot" in frame for frame in frames):
        return "waiting for an inference slot"
    own = [frame for frame in frames if any(mark in frame for mark in OWN)]
    for considered in (own, frames):
        for frame in reversed(considered):
            for stage, marks in STAGES:
                if any(mark in frame for mark in marks):
                    return stage
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--against", default=None, metavar="REF", help="Profile the service as it was at this git commit."
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    work = args.work or Path(tempfile.mkdtemp(prefix="tongkuan-profile-"))
    data_dir, rows = iconic_catalog(args.data, work, args.model)
    files = FileServer(args.data)
    files.start()
    server = Server(data_dir, free_port(), {"PYTHONPATH": str(checkout(args.against, work))} if args.against else None)
    server.start()
    assert server.process is not None
    try:
        base = f"http://127.0.0.1:{server.port}/taobao/image-search/url"
        val = [r["path"] for r in rows if r["split"] == "val"][:50]
        urls = [
            str(
                httpx.URL(
                    base, params={"appKey": APP[0], "appSecret": APP[1], "picUrl": files.url(f"grocery_store/{p}")}
                )
            )
            for p in val
        ]
        (work / "urls.txt").write_text("\n".join(urls))
        httpx.get(urls[0], timeout=60)  # warm up
        samples = work / "samples.txt"
        record = subprocess.Popen(
            [spy, "record", "--pid", str(server.process.pid), "--duration", str(int(args.seconds)),
             "--rate", "200", "--format", "raw", "--output", str(samples), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        load = subprocess.run(
            [sys.executable, str(REPO / "bench" / "load.py"), str(work / "urls.txt"), "--concurrency",
             str(args.clients), "--seconds", str(args.seconds - 2)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        _, errors = record.communicate(timeout=args.seconds + 60)
        if record.returncode != 0:
            raise SystemExit(f"py-spy failed: {errors.strip()[-500:]}")
    finally:
        server.stop()
        files.stop()
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        stages[stage_of(stack)] += int(count)
        functions[stack.split(";")[-1]] += int(count)
    total = sum(stages.values())
    shares = {stage: round(100 * n / total, 1) for stage, n in stages.most_common()}
    hottest = {name: round(100 * n / total, 1) for name, n in functions.most_common(15)}
    for stage, share in shares.items():
        print(f"{share:5.1f} %  {stage}")
    print(json.dumps({"model": args.model, "against": args.against, "clients": args.clients, "samples": total, "stages_percent": shares,
                      "hottest_functions_percent": hottest, "load": json.loads(load.stdout.strip().splitlines()[-1])}))  # fmt: skip


if __name__ == "__main__":
    main()

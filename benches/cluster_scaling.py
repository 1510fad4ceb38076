#!/usr/bin/env python3
"""Ranking across worker processes: a 200-teacher zoo (the bundled teachers copied with a seeded 0.1% weight
noise, as in zoo_scaling.py), 2,000 labeled MNIST rows ranked cold (no cached outputs: every compatible
teacher runs, every metric) by
  - the embedded mode (`faculty serve` over sled and local files), with this build and, when given, a build
    from before the many-machines work (--before BINARY);
  - a `faculty serve --max-jobs 0 --max-shards 0 --rank-shard-size 10` over PostgreSQL + S3 with 1 and
    with 2 `faculty worker` processes.
Every process is single-threaded (--intra-threads 1, RAYON_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1), so on a
2-core machine two workers can at best double one worker's throughput. Each measurement is a fresh state
(a new sled directory, or a new PostgreSQL schema and blob prefix), so every ranking is cold; the median
of --repeat runs, the modes taking turns. Prints a markdown table. Needs FACULTY_DATABASE_URL and FACULTY_BLOB_URL (see
benches/cluster_scaling.sh, which starts and stops a cluster for it).

    PYTHONPATH=.ort:.ort/py python3 benches/cluster_scaling.py [--teachers 200] [--repeat 3] [--before BIN]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_scaling import BIN, ROOT, free_port, http, make_zoo, upload  # noqa: E402

SINGLE = {"RAYON_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NO_COLOR": "1", "RUST_LOG": "faculty=warn"}
TASK = os.path.join(ROOT, "zoo/ground_truth/mnist_10way.npz")


def start(binary, args, env):
    # only the state this run names: none of the cluster's variables leak into an embedded server
    base = {k: v for k, v in os.environ.items() if not k.startswith("FACULTY_")}
    return subprocess.Popen([binary, *args, "--intra-threads", "1"], env={**base, **SINGLE, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(port):
    for _ in range(1200):
        try:
            return http(port, "GET", "/healthz")
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def cold_ranking(port):
    ds = upload(port, TASK)["id"]
    t = time.perf_counter()
    r = http(port, "POST", "/v1/rankings", json.dumps({"dataset_id": ds}).encode(), "application/json")
    took = time.perf_counter() - t
    assert len(r["results"]) > 0 and r["results"][0]["rank"] == 1, r
    return took, r


def embedded(binary, zoo, work):
    port = free_port()
    state = os.path.join(work, f"state-{uuid.uuid4().hex[:8]}")
    p = start(binary, ["serve", "--zoo", zoo, "--data-dir", state, "--addr", f"127.0.0.1:{port}"], {})
    try:
        wait_up(port)
        took, r = cold_ranking(port)
        return took, r
    finally:
        p.kill()
        p.wait()


def cluster(workers, zoo, work, shard_size):
    tag = f"bench_{uuid.uuid4().hex[:10]}"
    db, blob = os.environ["FACULTY_DATABASE_URL"], os.environ["FACULTY_BLOB_URL"]
    sep = "&" if "?" in db else "?"
    bucket, _, query = blob.partition("?")
    env = {"FACULTY_DATABASE_URL": f"{db}{sep}schema={tag}", "FACULTY_BLOB_URL": f"{bucket}/{tag}?{query}"}
    port = free_port()
    procs = [start(BIN, ["serve", "--zoo", zoo, "--data-dir", os.path.join(work, tag, "serve"),
                         "--addr", f"127.0.0.1:{port}", "--max-jobs", "0", "--max-shards", "0",
                         "--rank-shard-size", str(shard_size)], env)]
    try:
        wait_up(port)
        for k in range(workers):
            procs.append(start(BIN, ["worker", "--zoo", zoo, "--data-dir", os.path.join(work, tag, f"w{k}"),
                                     "--max-jobs", "0", "--max-shards", "1"], env))
        time.sleep(5)  # the workers index the zoo (in the shared catalog) before they take shards
        took, r = cold_ranking(port)
        who = {s["worker"] for s in r["shards"]}
        assert len(who) == workers, f"{workers} workers, shards scored by {who}"
        return took, r
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=10)
    ap.add_argument("--before", help="a release binary built before the many-machines work")
    a = ap.parse_args()
    work = tempfile.mkdtemp()
    try:
        zoo = os.path.join(work, "zoo")
        make_zoo(a.teachers, zoo)
        modes = []
        if a.before:
            modes.append(("embedded, before", lambda: embedded(a.before, zoo, work)))
        modes += [
            ("embedded", lambda: embedded(BIN, zoo, work)),
            ("1 worker", lambda: cluster(1, zoo, work, a.shard_size)),
            ("2 workers", lambda: cluster(2, zoo, work, a.shard_size)),
        ]
        # round-robin over the modes, so that a drift of the machine's speed hits every mode alike
        times = {name: [] for name, _ in modes}
        tops, compatible = set(), {}
        for _ in range(a.repeat):
            for name, run in modes:
                took, r = run()
                times[name].append(took)
                tops.add(r["results"][0]["teacher_id"])
                compatible[name] = sum(1 for x in r["results"] if x["compatible"])
                print(f"{name}: {took:.2f} s", file=sys.stderr)
        rows = [(name, statistics.median(t), min(t), max(t), compatible[name]) for name, t in times.items()]
        assert len(tops) == 1, f"the modes disagree on the top teacher: {tops}"
    finally:
        shutil.rmtree(work)
    one = next(r[1] for r in rows if r[0] == "1 worker")
    print(f"{a.teachers} teachers, shards of {a.shard_size}, median of {a.repeat} cold rankings, one thread per process")
    print()
    print("| mode | compatible | cold ranking (median) | range | teachers / s | vs 1 worker |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, med, lo, hi, comp in rows:
        print(f"| {name} | {comp} | {med:.2f} s | {lo:.2f}-{hi:.2f} s | {a.teachers / med:.1f} | {one / med:.2f}x |")


if __name__ == "__main__":
    main()

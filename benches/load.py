#!/usr/bin/env python3
"""A bounded load test (standard library only; loopback only; stops by itself).

Starts a release `faculty serve` on a free loopback port over the bundled zoo, uploads two datasets and
ranks them once (so later rankings of them are cached), then runs CLIENTS threads for SECONDS, each looping
over a mix of requests: list teachers, predict on a teacher, rank a dataset (cached), upload a small CSV
dataset (a new one most times). Every request is either served or refused with 429 + Retry-After; anything
else (a 5xx, no answer, a 429 without Retry-After) is counted as lost. Prints throughput, p50 / p99
latency per kind, status counts and the server's peak RSS (its own figure, GET /healthz peak_resident_mb:
the memory budget resets the kernel's VmHWM while it measures a model).
Usage: python3 benches/load.py [--clients 50] [--seconds 60] [extra serve flags after --]
"""
import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/faculty/target"))
BIN = os.path.join(TARGET, "release", "faculty")
BOUNDARY = "load-boundary-9d1"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(port, method, path, body=None, ctype="application/json", timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": ctype} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    retry = r.getheader("Retry-After")
    c.close()
    return r.status, data, retry


def multipart(name, data):
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think-ms", type=float, default=0, help="each client waits this long between requests")
    ap.add_argument("serve", nargs="*", help="extra flags for faculty serve (after --)")
    a = ap.parse_args()
    port = free_port()
    state = tempfile.mkdtemp(prefix="faculty-load-")
    proc = subprocess.Popen([BIN, "serve", "--zoo", os.path.join(ROOT, "zoo", "teachers"), "--data-dir", state,
                             "--addr", f"127.0.0.1:{port}"] + a.serve,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        ct = f"multipart/form-data; boundary={BOUNDARY}"
        datasets = []
        for task in ("letters_26way", "mnist_10way_5shot"):
            with open(os.path.join(ROOT, "zoo", "tasks", f"{task}.npz"), "rb") as f:
                st, body, _ = request(port, "POST", "/v1/datasets", multipart(f"{task}.npz", f.read()), ct)
            ds = json.loads(body)["id"]
            st, body, _ = request(port, "POST", "/v1/rankings", json.dumps({"dataset_id": ds}).encode())
            assert 200 <= st < 300, body[:300]
            datasets.append(ds)
        predict = json.dumps({"inputs": [[0.1 * i for i in range(16)]] * 8}).encode()
        lock = threading.Lock()
        lat = {k: [] for k in ("list", "predict", "rank (cached)", "upload")}
        statuses = {}
        lost = []
        stop = time.time() + a.seconds

        def client(k):
            rng = random.Random(k)
            n = 0
            while time.time() < stop:
                n += 1
                kind = rng.choice(["list", "list", "predict", "rank (cached)", "rank (cached)", "upload"])
                t0 = time.perf_counter()
                try:
                    if kind == "list":
                        st, _, retry = request(port, "GET", "/v1/teachers?page_size=50")
                    elif kind == "predict":
                        st, _, retry = request(port, "POST", "/v1/teachers/letters_mlp/predict", predict)
                    elif kind == "rank (cached)":
                        ds = datasets[rng.randrange(len(datasets))]
                        st, _, retry = request(port, "POST", "/v1/rankings",
                                               json.dumps({"dataset_id": ds}).encode())
                    else:
                        rows = "\n".join(f"{rng.random():.4f},{rng.random():.4f},{'ab'[i % 2]}" for i in range(40))
                        st, _, retry = request(port, "POST", "/v1/datasets",
                                               multipart("d.csv", f"x1,x2,label\n{rows}\n".encode()), ct)
                except Exception as e:  # no answer at all
                    with lock:
                        lost.append(f"{kind}: {e!r}")
                    continue
                ms = 1e3 * (time.perf_counter() - t0)
                with lock:
                    statuses[st] = statuses.get(st, 0) + 1
                    if st < 400:
                        lat[kind].append(ms)
                    elif st == 429 and retry:
                        pass
                    elif st >= 500 or st == 429:
                        lost.append(f"{kind}: {st}{' without Retry-After' if st == 429 else ''}")
                if st == 429 and retry:
                    time.sleep(min(float(retry), 1.0) * rng.random())
                elif a.think_ms:
                    time.sleep(a.think_ms / 1e3 * (0.5 + rng.random()))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - t0
        peak = json.loads(request(port, "GET", "/healthz")[1])["peak_resident_mb"]
        total = sum(statuses.values())

        def pct(v, q):
            v = sorted(v)
            return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")

        print(f"{a.clients} clients (think time {a.think_ms:g} ms) for {took:.0f} s: {total} answered ({total / took:.0f}/s), "
              f"statuses {dict(sorted(statuses.items()))}, lost {len(lost)}, server peak RSS {peak} MB\n")
        print("| request | served | p50 ms | p99 ms |\n|---|---:|---:|---:|")
        for k, v in lat.items():
            print(f"| {k} | {len(v)} | {pct(v, 0.5):.1f} | {pct(v, 0.99):.1f} |")
        for l in lost[:10]:
            print("lost:", l, file=sys.stderr)
        sys.exit(1 if lost or any(s >= 500 for s in statuses) else 0)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()

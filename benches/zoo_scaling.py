#!/usr/bin/env python3
"""How ranking grows with the zoo: zoos of 20 to 200 teachers made from the bundled ones (every copy's
float weights perturbed by a seeded 0.1% noise, so each is a distinct model with its own sha256), a
release `faculty serve` over each, 2,000 labeled MNIST rows ranked cold (no cached outputs) and warm
(everything cached), peak server RSS, and the Python reference (onnxruntime + numpy LEEP over the same
teachers and rows, sessions made outside the timing) on the same zoo. Prints a markdown table.

    bash scripts/setup.sh && cargo build --release
    PYTHONPATH=.ort:.ort/py python3 benches/zoo_scaling.py [20 50 100 200]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ranking_python import leep, probs  # noqa: E402  (the reference's own probabilities and LEEP)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/faculty/target")), "release/faculty")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def make_zoo(n, out):
    src = os.path.join(ROOT, "zoo/teachers")
    flat = sorted(f for f in os.listdir(src) if f.endswith(".onnx"))
    os.makedirs(out)
    for i in range(n):
        f = flat[i % len(flat)]
        m = onnx.load(os.path.join(src, f))
        rng = np.random.default_rng(i)
        for init in m.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT:
                w = numpy_helper.to_array(init)
                if w.size > 1:
                    w = w + rng.normal(0, 1e-3 * (float(w.std()) or 1.0), w.shape).astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
        name = f"{f[:-5]}_v{i:03d}"
        onnx.save(m, os.path.join(out, name + ".onnx"))
        card = os.path.join(src, f[:-5] + ".card.json")
        if os.path.exists(card):
            shutil.copy(card, os.path.join(out, name + ".card.json"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, method, path, body=None, ctype=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def upload(port, path):
    b = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{os.path.basename(path)}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return http(port, "POST", "/v1/datasets", body, f"multipart/form-data; boundary={b}")


def rss(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024
    return None


def faculty(zoo, state, task):
    port = free_port()
    p = subprocess.Popen([BIN, "serve", "--zoo", zoo, "--data-dir", state, "--addr", f"127.0.0.1:{port}",
                          "--intra-threads", str(THREADS)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            try:
                http(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        idle = rss(p.pid, "VmRSS")
        ds = upload(port, task)["id"]
        t = time.perf_counter()
        r = http(port, "POST", "/v1/rankings", json.dumps({"dataset_id": ds}).encode(), "application/json")
        cold = time.perf_counter() - t
        compatible = sum(1 for x in r["results"] if x["compatible"])
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            http(port, "POST", "/v1/rankings", json.dumps({"dataset_id": ds}).encode(), "application/json")
            warm.append(time.perf_counter() - t)
        return {"cold": cold, "warm": float(np.median(warm)), "compatible": compatible,
                "idle": idle, "peak": http(port, "GET", "/healthz")["peak_resident_mb"],
                "top": r["results"][0]["teacher_id"]}
    finally:
        p.kill()
        p.wait()


def python(zoo, x, y):
    """onnxruntime + LEEP over every teacher that reads 784 or [1, 28, 28] rows; sessions outside the timing."""
    runs = []
    for f in sorted(os.listdir(zoo)):
        if not f.endswith(".onnx"):
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        s = ort.InferenceSession(os.path.join(zoo, f), so, providers=["CPUExecutionProvider"])
        shape = s.get_inputs()[0].shape[1:]
        if shape == [784]:
            runs.append((s, x.reshape(len(x), 784)))
        elif shape == [1, 28, 28]:
            runs.append((s, x.reshape(len(x), 1, 28, 28)))
    t = time.perf_counter()
    for s, xi in runs:
        leep(probs(s, xi), y, 10)
    return time.perf_counter() - t, len(runs)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [20, 50, 100, 200]
    task = os.path.join(ROOT, "zoo/ground_truth/mnist_10way.npz")
    d = np.load(task)
    x, y = d["x"].astype(np.float32) / 255.0, d["y"]
    rows = []
    for n in sizes:
        work = tempfile.mkdtemp()
        try:
            make_zoo(n, os.path.join(work, "zoo"))
            f = faculty(os.path.join(work, "zoo"), os.path.join(work, "state"), task)
            py, py_n = python(os.path.join(work, "zoo"), x, y)
            rows.append((n, f, py, py_n))
            print(f"{n} teachers: {json.dumps(f)}, python {py:.2f} s over {py_n}", file=sys.stderr)
        finally:
            shutil.rmtree(work)
    print(f"| teachers | compatible | faculty cold | per compatible teacher | Python cold (LEEP only) | faculty / Python | warm (cached) | idle RSS | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, f, py, py_n in rows:
        print(f"| {n} | {f['compatible']} | {f['cold']:.2f} s | {1e3 * f['cold'] / f['compatible']:.1f} ms | "
              f"{py:.2f} s | {f['cold'] / py:.2f} | {1e3 * f['warm']:.0f} ms | {f['idle']} MB | {f['peak']} MB |")


if __name__ == "__main__":
    main()

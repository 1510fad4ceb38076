#!/usr/bin/env python3
"""The Python side of benches/ranking.rs, on the same inputs, in the same run:
  ranking_cold  onnxruntime on the same 16-teacher zoo's 784-input teachers over the same 2,000 rows,
                then LEEP in numpy (sessions created outside the timing, as faculty's are pooled)
  sinkhorn/100x100, sinkhorn/batch_10000x10x10  POT's ot.bregman.sinkhorn_log on the LCG problems
Prints JSON {name: seconds (median)}."""
import json
import os
import sys
import time
import warnings

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEFT_OUT = {"letters_am_logreg.onnx", "letters_lowdata_rf.onnx", "letters_logreg.onnx", "digits8x8_logreg.onnx"}


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 1664525 + 1013904223) % (1 << 32)
        return self.s / float(1 << 32)

    def simplex(self, n):
        v = np.array([self.next() + 0.05 for _ in range(n)])
        return v / v.sum()

    def matrix(self, n, m):
        return np.array([[self.next() for _ in range(m)] for _ in range(n)])


def probs(sess, x):
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    for o in outs:
        if isinstance(o, list):  # ZipMap
            keys = sorted(o[0].keys())
            return np.asarray([[r[k] for k in keys] for r in o], dtype=np.float32)
    for o, meta in zip(outs, sess.get_outputs()):
        if isinstance(o, np.ndarray) and o.dtype == np.float32 and o.ndim == 2:
            if (o < 0).any() or not np.allclose(o.sum(1), 1, atol=1e-3):
                e = np.exp(o - o.max(1, keepdims=True))
                o = e / e.sum(1, keepdims=True)
            return o
    raise RuntimeError("no probabilities")


def leep(p, y, c):
    joint = np.zeros((p.shape[1], c))
    for j in range(c):
        joint[:, j] = p[y == j].sum(0)
    cond = joint / joint.sum(1, keepdims=True)
    return np.mean(np.log((p @ cond)[np.arange(len(y)), y]))


def median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    warnings.filterwarnings("ignore")
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    d = np.load(os.path.join(ROOT, "zoo/ground_truth/mnist_10way.npz"))
    x = d["x"].astype(np.float32) / 255.0
    y = d["y"]
    sessions = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "zoo/teachers")):
        for f in files:
            if f.endswith(".onnx") and f not in LEFT_OUT:
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                s = ort.InferenceSession(os.path.join(dirpath, f), so, providers=["CPUExecutionProvider"])
                shape = s.get_inputs()[0].shape[1:]
                if all(isinstance(v, int) for v in shape) and int(np.prod(shape)) == 784:
                    sessions.append((s, shape))
    # the teachers that take MNIST rows (faculty's compatible ones; the bundled zoo grows)
    print(f"python: {len(sessions)} teachers take MNIST rows", file=sys.stderr)

    def rank():
        return sorted(leep(probs(s, x.reshape([-1] + shape)), y, 10) for s, shape in sessions)

    out = {"ranking_cold": median_time(rank, 5)}
    import ot
    rng = Lcg(42)
    a, b, m = rng.simplex(100), rng.simplex(100), rng.matrix(100, 100)
    out["sinkhorn/100x100"] = median_time(lambda: ot.bregman.sinkhorn_log(a, b, m, 0.05, numItermax=1000,
                                                                           stopThr=1e-9), 10)
    m10 = rng.matrix(10, 10)
    a10 = np.array([[rng.next() + 0.05 for _ in range(10)] for _ in range(10000)])
    b10 = np.array([[rng.next() + 0.05 for _ in range(10)] for _ in range(10000)])
    a10 /= a10.sum(1, keepdims=True)
    b10 /= b10.sum(1, keepdims=True)

    # POT solves one problem per call (its multi-histogram mode loops in Python too); 1,000 of the 10,000
    # problems are timed and the time scaled by 10, to keep the run short
    def batch():
        return [float((ot.bregman.sinkhorn_log(a10[k], b10[k], m10, 0.05, numItermax=1000, stopThr=1e-9) * m10).sum())
                for k in range(1000)]
    out["sinkhorn/batch_10000x10x10"] = 10 * median_time(batch, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

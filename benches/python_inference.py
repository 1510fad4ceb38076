#!/usr/bin/env python3
"""Python onnxruntime on the same teachers, rows and batch sizes as benches/inference.rs.
Prints JSON {"<kind>/<batch>": samples_per_second}."""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHERS = {"cnn": "mnist_cnn/2/model.onnx", "mlp": "mnist_mlp.onnx", "tree": "mnist_rf.onnx"}
BATCHES = [1, 64, 1024]


def main():
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    x = np.load(os.path.join(ROOT, "zoo/tasks/mnist_10way_5shot.npz"))["x_test"].astype(np.float32) / 255.0
    out = {}
    for kind, rel in TEACHERS.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        s = ort.InferenceSession(os.path.join(ROOT, "zoo/teachers", rel), so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        row = [d for d in inp.shape[1:]]
        for b in BATCHES:
            xb = np.ascontiguousarray(x[:b].reshape([b] + row))
            for _ in range(5):
                s.run(None, {inp.name: xb})
            times = []
            deadline = time.perf_counter() + 2.0
            while time.perf_counter() < deadline or len(times) < 10:
                t0 = time.perf_counter()
                s.run(None, {inp.name: xb})
                times.append(time.perf_counter() - t0)
            out[f"{kind}/{b}"] = b / float(np.median(times))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Adds Google's Magika file-type detector (PyPI magika 1.0.3, Apache-2.0) to the bundled zoo as
`file_type@1`: the model's bytes unchanged, a card with its 214 labels and its input layout, its licence,
reference outputs for the parity test, and its line in teachers.json. A second real third-party teacher,
with integer inputs (byte values) and labels that live in a sidecar config. Needs no torch:

    pip download --no-deps -d zoo/.data/magika magika==1.0.3
    PYTHONPATH=.ort:.ort/py python3 zoo/add_file_type.py --wheel zoo/.data/magika/magika-1.0.3-*.whl

`features(data)` is Magika's own feature layout (its `_extract_features_from_seekable`, v2): the first
block of the file with leading whitespace stripped, its first 1024 bytes padded at the end with 256, then
the last block with trailing whitespace stripped, its last 1024 bytes padded at the front with 256.
"""
import argparse
import json
import os
import shutil
import zipfile

import numpy as np
import onnx
import onnxruntime as ort

MODEL = "magika/models/standard_v3_3/model.onnx"
CONFIG = "magika/models/standard_v3_3/config.min.json"


def features(data: bytes, cfg: dict) -> list:
    """Magika's model input for a file's bytes (2048 ints in [0, 256])."""
    beg_size, end_size, pad, block = cfg["beg_size"], cfg["end_size"], cfg["padding_token"], cfg["block_size"]
    n = min(block, len(data))
    beg = list(data[:n].lstrip()[:beg_size])
    beg += [pad] * (beg_size - len(beg))
    end = list(data[len(data) - n:].rstrip()[-end_size:]) if n else []
    end = [pad] * (end_size - len(end)) + end
    return beg + end


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    with zipfile.ZipFile(args.wheel) as z:
        blob = z.read(MODEL)
        cfg = json.loads(z.read(CONFIG))
        # reference rows: the first 16 files of the wheel itself (fixed by its version)
        names = sorted(n for n in z.namelist() if not n.endswith("/"))[:16]
        ref = np.array([features(z.read(n), cfg) for n in names], dtype=np.float32)
    labels = cfg["target_labels_space"]
    d = os.path.join(args.out, "teachers", "file_type", "1")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    with open(path, "wb") as f:
        f.write(blob)
    card = {
        "labels": labels,
        "description": "Magika standard_v3_3: Google's file-type detector (214 content types) from the first "
                       "and last bytes of a file, shipped by PyPI magika 1.0.3",
        "license": "Apache-2.0",
        "source": "PyPI magika==1.0.3 (magika/models/standard_v3_3)",
        "preprocess": "bytes [0, 4096) with leading whitespace stripped, first 1024 (padded at the end with "
                      "256), then the last 4096 with trailing whitespace stripped, last 1024 (padded at the "
                      "front with 256): 2048 whole numbers in [0, 256] (see zoo/add_file_type.py)",
    }
    with open(os.path.join(d, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    shutil.copy("/usr/share/common-licenses/Apache-2.0", os.path.join(d, "LICENSE"))

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"bytes": ref.astype(np.int32)})[0].astype(np.float32)
    tid = "file_type@1"
    np.savez_compressed(os.path.join(args.out, "reference", f"{tid}.npz"), x=ref, probs=probs)
    m = onnx.load(path)
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    params += sum(int(np.prod(a.t.dims)) for n in m.graph.node if n.op_type == "Constant"
                  for a in n.attribute if a.name == "value")
    entry = dict(id=tid, name="file_type", version="1", file=os.path.relpath(path, args.out),
                 data="third-party (Google Magika)", classes=labels, arch="magika-standard-v3.3",
                 exporter="tf2onnx", params=params, bytes=os.path.getsize(path), heldout_accuracy=None,
                 outputs_logits=False, notes="real pre-trained third-party model, int32 inputs (byte values)")
    tj = os.path.join(args.out, "teachers.json")
    meta = json.load(open(tj))
    meta["teachers"] = [t for t in meta["teachers"] if t["id"] != tid] + [entry]
    with open(tj, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{tid}: {len(labels)} labels, params={params}, top labels of the reference rows:",
          [labels[i] for i in probs.argmax(1)])


if __name__ == "__main__":
    main()

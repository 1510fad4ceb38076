#!/usr/bin/env python3
"""Measures the ground truth that faculty's ranking is judged against.

For every few-shot student task below and every input-compatible teacher in the bundled zoo, a student is
distilled from the teacher and its held-out accuracy measured, over several draws of the labeled shots; the
same student trained on the labeled shots alone is the scratch baseline. Run it after the zoo is built:

    /opt/zoo-venv/bin/python zoo/ground_truth.py          (or ZOO_VENV=... zoo/build.sh ground-truth)

Writes
  zoo/ground_truth/<task>.npz   pool x / y, test x / y, label names, and per draw the labeled and unlabeled
                                pool indices (faculty eval-ranking builds each draw's dataset from them)
  zoo/ground_truth.json         the protocol and, per task, the scratch and per-teacher accuracies

The tasks use only rows no teacher saw (zoo/build_zoo.py documents the split).

Protocol (the "distilled student" the ranking is asked to predict):
  student  MLP(d_in, 128, C), inputs flattened; tabular inputs standardised with the task's own statistics
  scratch  cross-entropy on the labeled shots, Adam lr 3e-3, 300 full-batch steps, weight decay 1e-4
  teacher  teacher t's probabilities p_t(x) on the labeled and unlabeled rows are carried into the student's
           label space through P(j | i), the teacher-class -> student-class map estimated from the labeled
           shots (soft joint, add-0.1 smoothing): q_t(x)_j = sum_i p_t(x)_i P(j | i). The student minimises
           CE(labeled) + KL(q_t || student) over labeled + unlabeled rows, same optimiser and steps.
  This is cross-label distillation with a data-driven label map; it needs no shared label names.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from build_zoo import DIGITS, FASHION, SEED, load_digits8, load_fashion, load_letters, load_mnist  # noqa: E402

DRAWS = 10
UNLABELED = 500
STEPS = 300


def upsample_digits(x8):
    """sklearn 8x8 digits (0-16) drawn like MNIST: a 20x20 bilinear resize centred in 28x28, in [0, 1]."""
    t = torch.from_numpy(x8.reshape(-1, 1, 8, 8) / 16.0).float()
    t = nn.functional.interpolate(t, size=(20, 20), mode="bilinear", align_corners=False)
    t = nn.functional.pad(t, (4, 4, 4, 4))
    return np.rint(t.clamp(0, 1).numpy() * 255).astype(np.uint8)


def build_tasks(src):
    mx, my = load_mnist(src)
    (fx, fy), (fxt, fyt) = load_fashion(src)
    lx, ly = load_letters(src)
    letters = sorted(set(ly.tolist()))
    ly_i = np.asarray([letters.index(v) for v in ly], dtype=np.int64)
    dx, dy = load_digits8()
    img = lambda a: a.reshape(-1, 1, 28, 28)  # noqa: E731
    tasks = []

    def add(name, desc, kind, x, y, xt, yt, labels, shots, draws=DRAWS, unlabeled=UNLABELED):
        tasks.append(dict(name=name, desc=desc, kind=kind, x=x, y=y, x_test=xt, y_test=yt, labels=labels,
                          shots=shots, draws=draws, pool_size=unlabeled))

    pool, test = slice(6000, 8000), slice(8000, 10000)
    add("mnist_10way", "MNIST digits 0-9 (the teachers' own label space)", "same labels",
        img(mx[pool]), my[pool], img(mx[test]), my[test], DIGITS, 5)
    sel, selt = my[pool] >= 5, my[test] >= 5
    add("mnist_59_5way", "MNIST digits 5-9 only (a label subset; the 0-4 teacher has none of them)", "label subset",
        img(mx[pool][sel]), my[pool][sel] - 5, img(mx[test][selt]), my[test][selt] - 5, DIGITS[5:], 10)
    keep = [0, 1, 2, 3, 4, 6]
    s = np.isin(fyt, keep)
    fx6, fy6 = img(fxt[s]), np.asarray([keep.index(v) for v in fyt[s]])
    add("fashion_clothing_6way", "Fashion-MNIST test set, the six clothing classes", "label subset",
        fx6[:3000], fy6[:3000], fx6[3000:], fy6[3000:], [FASHION[i] for i in keep], 10)
    coarse = {0: 0, 2: 0, 4: 0, 6: 0, 1: 1, 3: 1, 5: 2, 7: 2, 8: 2, 9: 2}
    fyc = np.asarray([coarse[int(v)] for v in fyt])
    add("fashion_3way_coarse", "Fashion-MNIST test set relabelled: top / bottom or dress / shoe or bag",
        "coarse relabelling", img(fxt[:5000]), fyc[:5000], img(fxt[5000:]), fyc[5000:],
        ["top", "bottom or dress", "shoe or bag"], 10)
    d28 = upsample_digits(dx[1200:])
    add("digits_upsampled", "sklearn 8x8 digits (rows [1200,1797)) upsampled to 28x28: domain shift",
        "domain shift", d28[:400], dy[1200:1600], d28[400:], dy[1600:], DIGITS, 5)
    add("letters_26way", "UCI letters rows [14000,20000), 16 raw features", "tabular",
        lx[14000:17000], ly_i[14000:17000], lx[17000:], ly_i[17000:], letters, 10)
    # --- the broader set (second build): more relabellings, binary tasks, domain shifts, 1 to 20 shots, with
    # and without an unlabeled pool; 10 draws each (5 when first built, extended to 10 to halve the truth's
    # noise). Same rows as above (no teacher saw them).
    mp, mt = img(mx[pool]), img(mx[test])
    parity = lambda y: (y % 2).astype(np.int64)  # noqa: E731
    add("mnist_parity_2way", "MNIST relabelled even / odd (binary; one teacher has exactly this label space)",
        "binary relabelling", mp, parity(my[pool]), mt, parity(my[test]), ["even", "odd"], 10, 10)
    big = lambda y: (y >= 5).astype(np.int64)  # noqa: E731
    add("mnist_small_big_2way", "MNIST relabelled 0-4 / 5-9 (binary; no teacher has this label space)",
        "binary relabelling", mp, big(my[pool]), mt, big(my[test]), ["small (0-4)", "big (5-9)"], 10, 10)
    rot = lambda a: np.ascontiguousarray(np.rot90(a, 1, axes=(2, 3)))  # noqa: E731
    add("mnist_rot90_10way", "MNIST rotated 90 degrees: domain shift", "domain shift (rotation)",
        rot(mp), my[pool], rot(mt), my[test], DIGITS, 5, 10)
    add("mnist_inverted_10way", "MNIST with inverted intensities (255 - x): domain shift",
        "domain shift (inversion)", 255 - mp, my[pool], 255 - mt, my[test], DIGITS, 5, 10)
    nrng = np.random.default_rng(SEED + 7)
    noisy = lambda a: np.clip(a.astype(np.float32) + nrng.normal(0, 100, a.shape), 0, 255).astype(np.uint8)  # noqa: E731
    add("mnist_noisy_10way", "MNIST with strong Gaussian pixel noise (sd 100 of 255): domain shift",
        "domain shift (noise)", noisy(mp), my[pool], noisy(mt), my[test], DIGITS, 5, 10)
    add("mnist_1shot_10way", "MNIST digits 0-9, one labeled row per class, 500 unlabeled", "same labels (1 shot)",
        mp, my[pool], mt, my[test], DIGITS, 1, 10)
    add("mnist_20shot_nopool", "MNIST digits 0-9, 20 labeled rows per class, no unlabeled rows",
        "same labels (20 shots, no pool)", mp, my[pool], mt, my[test], DIGITS, 20, 10, 0)
    fa, fat = img(fxt[:5000]), img(fxt[5000:])
    add("fashion_10way_1shot", "Fashion-MNIST test set, all 10 classes, one labeled row per class",
        "same labels (1 shot)", fa, fyt[:5000], fat, fyt[5000:], FASHION, 1, 10)
    foot = [5, 7, 9]
    s1, s2 = np.isin(fyt[:5000], foot), np.isin(fyt[5000:], foot)
    fmap = lambda y: np.asarray([foot.index(v) for v in y], dtype=np.int64)  # noqa: E731
    add("fashion_footwear_3way", "Fashion-MNIST Sandal / Sneaker / Ankle boot, 5 shots, no unlabeled rows",
        "label subset (no pool)", fa[s1], fmap(fyt[:5000][s1]), fat[s2], fmap(fyt[5000:][s2]),
        [FASHION[i] for i in foot], 5, 10, 0)
    add("fashion_inverted_6way", "Fashion-MNIST clothing classes with inverted intensities: domain shift",
        "domain shift (inversion)", 255 - fx6[:3000], fy6[:3000], 255 - fx6[3000:], fy6[3000:],
        [FASHION[i] for i in keep], 10, 10)
    vowel = lambda y: np.asarray([letters[v] in "AEIOU" for v in y], dtype=np.int64)  # noqa: E731
    lp, lt = lx[14000:17000], lx[17000:]
    add("letters_vowel_2way", "UCI letters relabelled consonant / vowel (binary, unbalanced)", "tabular (binary)",
        lp, vowel(ly_i[14000:17000]), lt, vowel(ly_i[17000:]), ["consonant", "vowel"], 10, 10)
    am, amt = ly_i[14000:17000] < 13, ly_i[17000:] < 13
    add("letters_am_13way", "UCI letters A-M only, 20 shots, no unlabeled rows", "tabular (label subset, no pool)",
        lp[am], ly_i[14000:17000][am], lt[amt], ly_i[17000:][amt], letters[:13], 20, 10, 0)
    lrng = np.random.default_rng(SEED + 11)
    lsd = lx[:12000].std(0)
    lnoise = lambda a: (a + lrng.normal(0, 1, a.shape) * lsd).astype(np.float32)  # noqa: E731
    add("letters_noisy_26way", "UCI letters with Gaussian noise of one feature sd added: domain shift",
        "tabular (domain shift, noise)", lnoise(lp), ly_i[14000:17000], lnoise(lt), ly_i[17000:], letters, 5, 10)
    for i, t in enumerate(tasks):
        rng = np.random.default_rng(SEED + 101 * i)
        lab, unl = [], []
        for _ in range(t["draws"]):
            idx = np.concatenate([rng.choice(np.flatnonzero(t["y"] == c), t["shots"], replace=False)
                                  for c in range(len(t["labels"]))])
            rest = np.setdiff1d(np.arange(len(t["y"])), idx)
            lab.append(np.sort(idx))
            unl.append(np.sort(rng.choice(rest, min(t["pool_size"], len(rest)), replace=False)))
        t["labeled"], t["unlabeled"] = np.stack(lab), np.stack(unl)
    return tasks


# ----------------------------------------------------------------------------------------------- teachers
def teacher_list():
    with open(os.path.join(HERE, "teachers.json")) as f:
        return json.load(f)["teachers"]


class Teacher:
    def __init__(self, meta):
        self.id = meta["id"]
        self.path = os.path.join(HERE, meta["file"])
        self.logits = meta["outputs_logits"]
        self.sess = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        shape = self.sess.get_inputs()[0].shape
        self.shape = [d if isinstance(d, int) else -1 for d in shape[1:]]
        props = {p.key: p.value for p in onnx.load(self.path).metadata_props}
        self.mean = np.asarray(json.loads(props["input_mean"]), np.float32) if "input_mean" in props else None
        self.std = np.asarray(json.loads(props["input_std"]), np.float32) if "input_std" in props else None

    def accepts(self, row_shape):
        if any(d < 0 for d in self.shape):
            return False
        return int(np.prod(self.shape)) == int(np.prod(row_shape))

    def probs(self, x):
        from build_zoo import run_probs
        x = x.reshape((-1,) + tuple(self.shape))
        if self.mean is not None:
            x = ((x - self.mean) / self.std).astype(np.float32)
        return run_probs(self.path, x, self.logits)


def as_float(x):
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


# ----------------------------------------------------------------------------------------------- students
def label_map(p_lab, y_lab, c_s, smooth=0.1):
    """P(j | i): teacher class i -> student class j, from the labeled rows' soft joint."""
    joint = np.zeros((p_lab.shape[1], c_s))
    for j in range(c_s):
        joint[:, j] = p_lab[y_lab == j].sum(0)
    joint += smooth / c_s
    return joint / joint.sum(1, keepdims=True)


def train_student(x_lab, y_lab, x_all, q_all, c_s, x_test, seed):
    torch.manual_seed(seed)
    d = x_lab.shape[1]
    model = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, c_s))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xl, yl = torch.from_numpy(x_lab), torch.from_numpy(y_lab)
    xa = torch.from_numpy(x_all)
    qa = None if q_all is None else torch.from_numpy(q_all.astype(np.float32))
    for _ in range(STEPS):
        loss = nn.functional.cross_entropy(model(xl), yl)
        if qa is not None:
            logq = nn.functional.log_softmax(model(xa), dim=1)
            loss = loss + nn.functional.kl_div(logq, qa, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(torch.from_numpy(x_test)).argmax(1).numpy()


def main():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    src = os.path.join(HERE, ".data")
    out_dir = os.path.join(HERE, "ground_truth")
    os.makedirs(out_dir, exist_ok=True)
    teachers = [Teacher(m) for m in teacher_list()]
    report = {"seed": SEED, "draws": DRAWS, "unlabeled_per_draw": UNLABELED, "protocol": __doc__.split(
        "Protocol")[1].strip(), "tasks": []}
    # tasks already in ground_truth.json are kept as measured; a task with fewer draws measured than it now
    # has is extended by the missing ones (a draw's rows and seed do not depend on how many draws follow);
    # --all remeasures
    gt_path = os.path.join(HERE, "ground_truth.json")
    done = {}
    if "--all" not in sys.argv and os.path.exists(gt_path):
        done = {t["name"]: t for t in json.load(open(gt_path))["tasks"]}
    for t in build_tasks(src):
        old = done.get(t["name"])
        if old is not None and len(old["scratch"]) >= t["draws"]:
            report["tasks"].append(old)
            continue
        if old is not None:
            # the draws already measured must be the first draws of the task as built now
            kept = np.load(os.path.join(out_dir, f"{t['name']}.npz"))
            n_old = len(old["scratch"])
            assert (kept["labeled"][:n_old] == t["labeled"][:n_old]).all(), t["name"]
            assert (kept["unlabeled"][:n_old] == t["unlabeled"][:n_old]).all(), t["name"]
            assert (kept["x"] == t["x"]).all() and (kept["x_test"] == t["x_test"]).all(), t["name"]
        np.savez_compressed(os.path.join(out_dir, f"{t['name']}.npz"), x=t["x"], y=t["y"].astype(np.int64),
                            x_test=t["x_test"], y_test=t["y_test"].astype(np.int64), labels=np.asarray(t["labels"]),
                            labeled=t["labeled"], unlabeled=t["unlabeled"])
        c_s = len(t["labels"])
        row_shape = t["x"].shape[1:]
        xf, xtf = as_float(t["x"]), as_float(t["x_test"])
        flat, flat_t = xf.reshape(len(xf), -1), xtf.reshape(len(xtf), -1)
        if t["kind"].startswith("tabular"):
            mu, sd = flat.mean(0), flat.std(0) + 1e-6
            flat, flat_t = (flat - mu) / sd, (flat_t - mu) / sd
        flat, flat_t = flat.astype(np.float32), flat_t.astype(np.float32)
        entry = {"name": t["name"], "description": t["desc"], "kind": t["kind"], "classes": t["labels"],
                 "shots": t["shots"], "pool_rows": len(t["y"]), "test_rows": len(t["y_test"]),
                 "scratch": [], "teachers": {}, "incompatible": []}
        if old is not None:
            entry["scratch"] = list(old["scratch"])
            entry["teachers"] = {k: list(v) for k, v in old["teachers"].items()}
        compat = [te for te in teachers if te.accepts(row_shape)]
        entry["incompatible"] = [te.id for te in teachers if te not in compat]
        if old is not None:
            compat = [te for te in compat if te.id in old["teachers"]]
            assert len(compat) == len(old["teachers"]), f"{t['name']}: teachers changed; use --all"
        probs = {te.id: te.probs(xf) for te in compat}
        entry["draws"], entry["unlabeled_per_draw"] = t["draws"], t["pool_size"]
        for d in range(len(entry["scratch"]), t["draws"]):
            lab, unl = t["labeled"][d], t["unlabeled"][d]
            both = np.concatenate([lab, unl])
            y_lab = t["y"][lab].astype(np.int64)
            pred = train_student(flat[lab], y_lab, flat[both], None, c_s, flat_t, SEED + d)
            entry["scratch"].append(round(float((pred == t["y_test"]).mean()), 4))
            for te in compat:
                p = probs[te.id]
                pm = label_map(p[lab], y_lab, c_s)
                q = p[both] @ pm
                pred = train_student(flat[lab], y_lab, flat[both], q, c_s, flat_t, SEED + d)
                entry["teachers"].setdefault(te.id, []).append(round(float((pred == t["y_test"]).mean()), 4))
        entry["scratch_mean"] = round(float(np.mean(entry["scratch"])), 4)
        entry["teacher_mean"] = {k: round(float(np.mean(v)), 4) for k, v in entry["teachers"].items()}
        best = max(entry["teacher_mean"].values())
        entry["best_teacher_mean"] = best
        entry["teacher_helps"] = bool(best > entry["scratch_mean"])
        report["tasks"].append(entry)
        # after every task (to a temporary file, then renamed): a long run can be stopped and resumed
        names = {x["name"] for x in report["tasks"]}
        with open(gt_path + ".tmp", "w") as f:
            json.dump(report | {"tasks": report["tasks"] + [v for k, v in done.items() if k not in names]},
                      f, indent=1)
        os.replace(gt_path + ".tmp", gt_path)
        order = sorted(entry["teacher_mean"].items(), key=lambda kv: -kv[1])
        print(f"{t['name']:24s} scratch={entry['scratch_mean']:.3f}  " +
              "  ".join(f"{k}={v:.3f}" for k, v in order), flush=True)
    with open(gt_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

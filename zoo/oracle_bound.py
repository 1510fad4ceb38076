"""How far can a ranking built on the teachers' outputs go on this ground truth?

Scores every teacher on every draw with quantities no ranking can have: the teacher's outputs carried
into the task's labels (the same label map the ground-truth student uses, from the draw's labeled rows),
judged with the *test* rows' labels (2,000-5,000 rows per task). Prints, per task and over the 19 tasks, the
mean Spearman of each against the truth, judged like `faculty eval-ranking` judges the metrics:

  test_acc  accuracy of the mapped teacher on the test rows
  test_ll   mean log-likelihood of the test labels under it (LEEP on the test rows, with their labels)
  pool_acc  accuracy of the mapped teacher on the draw's unlabeled rows (tasks with a pool)
  neg_ent   minus the mean entropy of its mapped outputs (how confident the soft targets are)
  acc+ll    test_acc and test_ll ranks averaged
  sim       a simulated student's test accuracy: a ridge on 1,024 random ReLU features of the student's
            inputs, trained like the student (labeled rows: the mean of the one-hot label and the mapped
            target; unlabeled rows: the mapped target)

Run with the ground truth's venv from zoo/: `V/bin/python oracle_bound.py` (~1 min on 2 cores).
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ground_truth import Teacher, as_float, label_map, teacher_list  # noqa: E402

KEYS = ["test_acc", "test_ll", "pool_acc", "neg_ent", "acc+ll", "sim"]
FEATURES = 1024


def rank(a):
    return np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)


def spearman(a, b):
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def student_inputs(task, x, x_test):
    """Flattened float rows as the ground-truth student sees them (tabular: standardised)."""
    flat = as_float(x).reshape(len(x), -1)
    flat_t = as_float(x_test).reshape(len(x_test), -1)
    if task["kind"].startswith("tabular"):
        mu, sd = flat.mean(0), flat.std(0) + 1e-6
        flat, flat_t = (flat - mu) / sd, (flat_t - mu) / sd
    rng = np.random.default_rng(0)
    w = rng.normal(0, np.sqrt(2.0 / flat.shape[1]), (flat.shape[1], FEATURES))
    b = rng.normal(0, 0.1, FEATURES)
    feats = lambda f: np.hstack([np.maximum(f @ w + b, 0), np.ones((len(f), 1))])
    return feats(flat), feats(flat_t)


def main():
    gt = json.load(open(os.path.join(HERE, "ground_truth.json")))
    teachers = {m["id"]: m for m in teacher_list()}
    per_task = {}
    for task in gt["tasks"]:
        z = np.load(os.path.join(HERE, "ground_truth", f"{task['name']}.npz"))
        x, y, xt, yt = z["x"], z["y"], z["x_test"], z["y_test"]
        c_s = len(task["classes"])
        ids = list(task["teachers"])
        models = {i: Teacher(teachers[i]) for i in ids}
        pool = {i: models[i].probs(as_float(x)) for i in ids}
        test = {i: models[i].probs(as_float(xt)) for i in ids}
        truth = np.array([task["teacher_mean"][i] for i in ids])
        h, h_test = student_inputs(task, x, xt)
        judged = {k: [] for k in KEYS}
        for d in range(len(task["scratch"])):
            lab, unl = z["labeled"][d], z["unlabeled"][d]
            f = {k: [] for k in KEYS if k != "acc+ll"}
            both = np.concatenate([lab, unl])
            a = h[both]
            ridge = np.linalg.inv(a.T @ a + np.eye(a.shape[1])) @ a.T
            for i in ids:
                pm = label_map(pool[i][lab], y[lab], c_s)
                qt, qp = test[i] @ pm, pool[i][unl] @ pm
                f["test_acc"].append((qt.argmax(1) == yt).mean())
                f["test_ll"].append(np.log(qt[np.arange(len(yt)), yt] + 1e-12).mean())
                f["pool_acc"].append((qp.argmax(1) == y[unl]).mean() if len(unl) else np.nan)
                f["neg_ent"].append((qt * np.log(qt + 1e-12)).sum(1).mean())
                target = pool[i][both] @ pm
                target[: len(lab)] = 0.5 * (target[: len(lab)] + np.eye(c_s)[y[lab]])
                f["sim"].append(((h_test @ (ridge @ target)).argmax(1) == yt).mean())
            f["acc+ll"] = rank(np.array(f["test_acc"])) + rank(np.array(f["test_ll"]))
            for k, v in f.items():
                v = np.asarray(v, dtype=float)
                if np.isfinite(v).all():
                    judged[k].append(spearman(v, truth))
        per_task[task["name"]] = {k: float(np.mean(v)) if v else float("nan") for k, v in judged.items()}
        print(f"{task['name']:24s} " + "  ".join(f"{k} {v:.3f}" for k, v in per_task[task["name"]].items()),
              flush=True)
    print("mean Spearman over tasks: " + "  ".join(
        f"{k} {np.mean([t[k] for t in per_task.values() if np.isfinite(t[k])]):.3f}"
        f" ({sum(np.isfinite(t[k]) for t in per_task.values())} tasks)" for k in KEYS))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Many teachers, one student: the multi-teacher and weight-fusion benchmark (standard library only).

Runs the release binary's `distill --json` on the bundled tasks (their test splits: rows no training or
choice saw) and prints the README's tables:
  1. every fusion rule and `auto` against the best single-teacher distillation (the teacher of the set
     whose own faculty student is best on the test rows, averaged over seeds: an oracle choice, so the
     comparison is strict), paired over seeds;
  2. the off-domain check: `weighted` and `mean` with an off-domain teacher added to the set, against the
     same rule without it;
  3. weight fusion on the ensemble families: plain vs aligned averaging (one-shot), the learned
     combination, one epoch of fine-tuning, against the mean teacher and the ensemble.
Usage: python3 benches/fusion.py [--seeds 5] [--out benches/results/fusion.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/faculty/target"))
BIN = os.path.join(TARGET, "release", "faculty")

# task -> (teacher set, off-domain teacher or None)
TASKS = {
    "mnist_10way_5shot": (["mnist_cnn@2", "mnist_mlp", "mnist_mlp_shard1", "mnist_mlp_shard2"], "fashion_mlp"),
    "fashion_clothing_6way": (["fashion_cnn_shard1", "fashion_cnn_shard2", "fashion_cnn_shard3"],
                              "mnist_mlp_shard1"),
    "letters_26way": (["letters_mlp", "letters_rf", "letters_logreg", "letters_am_logreg"], None),
}
RULES = ["mean", "weighted", "plurality", "borda", "loss_avg", "mimic_all", "auto"]
FAMILIES = {
    "4 MNIST MLP shards": ["mnist_mlp_shard1", "mnist_mlp_shard2", "mnist_mlp_shard3", "mnist_mlp_shard4"],
    "MNIST disjoint label halves": ["mnist_halfa_mlp", "mnist_halfb_mlp"],
}
STUDENT = "mlp:64"


def distill(task, seed, args):
    with tempfile.TemporaryDirectory() as d:
        cmd = [BIN, "distill", "--zoo", os.path.join(ROOT, "zoo", "teachers"),
               "--dataset", os.path.join(ROOT, "zoo", "tasks", f"{task}.npz"),
               "--config", json.dumps({"seed": seed}), "--out", os.path.join(d, "s.onnx"), "--json"] + args
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        return json.loads(r.stdout)


def test_acc(card):
    """The distilled student's test accuracy (before the scratch fallback), in percent."""
    t = card["test"]
    return 100 * (t["distilled"] or t["student"])["accuracy"]


def stats(xs):
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, s


def fmt(xs):
    m, s = stats(xs)
    return f"{m:.1f} ± {s:.1f}"


def fmt_diff(xs):
    m, s = stats(xs)
    return f"{m:+.1f} ± {s:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fusion.json"))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--parts", default="multi,weight", help="multi, weight or both; a part not run keeps "
                    "its results from --out")
    a = ap.parse_args()
    seeds = list(range(a.seeds))
    res = {"multi": {}, "offdomain": {}, "weight": {}, "seeds": seeds, "student": STUDENT}
    parts = a.parts.split(",")
    if os.path.exists(a.out) and parts != ["multi", "weight"]:
        with open(a.out) as f:
            old = json.load(f)
        for k in ("multi", "offdomain", "weight"):
            if (k == "weight") != ("weight" in parts) or (k != "weight" and "multi" not in parts):
                res[k] = old.get(k, {})
    for task in (a.tasks.split(",") if "multi" in parts else []):
        teachers, off = TASKS[task]
        r = res["multi"][task] = {"single": {t: [] for t in teachers}, "rules": {x: [] for x in RULES},
                                  "scratch": [], "ensemble": [], "delivered_auto": []}
        for seed in seeds:
            for t in teachers:
                c = distill(task, seed, ["--method", "faculty", "--teacher", t, "--student", STUDENT])
                r["single"][t].append(test_acc(c))
                if t == teachers[0]:
                    r["scratch"].append(100 * c["test"]["scratch"]["accuracy"])
            for rule in RULES:
                c = distill(task, seed, ["--method", "multi_teacher", "--teachers", ",".join(teachers),
                                         "--fusion", rule, "--student", STUDENT])
                r["rules"][rule].append(test_acc(c))
                if rule == "auto":
                    r["delivered_auto"].append(100 * c["test"]["student"]["accuracy"])
                    r["ensemble"].append(100 * c["test"]["teacher"]["accuracy"])
                    r.setdefault("auto_picks", []).append(c["fusion"]["rule"])
            print(f"{task} seed {seed}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in r["rules"].items()),
                  file=sys.stderr)
            if off:
                o = res["offdomain"].setdefault(task, {"off": off, "weighted": [], "mean": [],
                                                       "weights": []})
                for rule in ("weighted", "mean"):
                    c = distill(task, seed, ["--method", "multi_teacher", "--teachers",
                                             ",".join(teachers + [off]), "--fusion", rule, "--student", STUDENT])
                    o[rule].append(test_acc(c))
                    if rule == "weighted":
                        o["weights"].append([t["weight"] for t in c["fusion"]["teachers"]][-1])
    for fam, teachers in (FAMILIES.items() if "weight" in parts else []):
        w = res["weight"][fam] = {"teachers": [], "ensemble": [], "candidates": {}, "params": None,
                                  "teacher_params": None}
        for seed in seeds:
            ts = ",".join(teachers)
            # output-space KD from the same teachers into the same architecture, and alignment by weights
            c = distill("mnist_10way_5shot", seed, ["--method", "multi_teacher", "--teachers", ts, "--fusion",
                                                    "mean", "--student", "mlp:64"])
            w["candidates"].setdefault("output-space KD (mean)", []).append(test_acc(c))
            c = distill("mnist_10way_5shot", seed, ["--method", "weight_fusion", "--teachers", ts,
                                                    "--weight-fusion", '{"align": "weights", "combine": false, '
                                                    '"fine_tune_epochs": 0}'])
            al = [x for x in c["weight_fusion"]["candidates"] if x["name"] == "aligned average"][0]
            w["candidates"].setdefault("aligned by weights", []).append(100 * al["test_accuracy"])
            c = distill("mnist_10way_5shot", seed, ["--method", "weight_fusion", "--teachers", ts])
            wf = c["weight_fusion"]
            w["teachers"].append(100 * statistics.mean(t["test_accuracy"] for t in wf["teachers"]))
            w["ensemble"].append(100 * wf["ensemble_test_accuracy"])
            for cand in wf["candidates"]:
                w["candidates"].setdefault(cand["name"], []).append(100 * cand["test_accuracy"])
            w["params"] = c["parameters"]
            w["teacher_params"] = c["parameters"] * len(teachers)
            print(f"{fam} seed {seed}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in w["candidates"].items()),
                  file=sys.stderr)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print_tables(res)


def print_tables(res):
    n = len(res["seeds"])
    print(f"### Multi-teacher fusion: test accuracy (%), student {res['student']}, mean ± std over {n} seeds\n")
    print("Difference columns are paired per seed against the best single-teacher `faculty` student of the "
          "set (the teacher whose student is best on the test rows on average: an oracle choice).\n")
    print("| task | scratch | best single (teacher) | ensemble | " + " | ".join(RULES) + " |")
    print("|---" * (4 + len(RULES)) + "|")
    gains = {x: [] for x in RULES}
    for task, r in res["multi"].items():
        best_t = max(r["single"], key=lambda t: statistics.mean(r["single"][t]))
        best = r["single"][best_t]
        cells = []
        for rule in RULES:
            d = [a - b for a, b in zip(r["rules"][rule], best)]
            gains[rule].extend(d)
            cells.append(f"{fmt(r['rules'][rule])} ({fmt_diff(d)})")
        print(f"| {task} | {fmt(r['scratch'])} | {fmt(best)} ({best_t}) | {fmt(r['ensemble'])} | "
              + " | ".join(cells) + " |")
    print("| **mean gain over the best single** | | | | "
          + " | ".join(f"**{statistics.mean(gains[x]):+.2f}**" for x in RULES) + " |")
    picks = {}
    for r in res["multi"].values():
        for p in r.get("auto_picks", []):
            picks[p] = picks.get(p, 0) + 1
    print(f"\n`auto` picked: {', '.join(f'{k} {v}x' for k, v in sorted(picks.items()))}.\n")
    if res["offdomain"]:
        print("### An off-domain teacher added to the set: test accuracy (%), paired against the same rule "
              "without it\n")
        print("| task | off-domain teacher | its weight | weighted: with | change | mean: with | change |")
        print("|---|---|---|---|---|---|---|")
        for task, o in res["offdomain"].items():
            r = res["multi"][task]["rules"]
            dw = [a - b for a, b in zip(o["weighted"], r["weighted"])]
            dm = [a - b for a, b in zip(o["mean"], r["mean"])]
            print(f"| {task} | {o['off']} | {statistics.mean(o['weights']):.3f} | {fmt(o['weighted'])} | "
                  f"{fmt_diff(dw)} | {fmt(o['mean'])} | {fmt_diff(dm)} |")
        print()
    print(f"### Weight fusion on the ensemble families (mnist_10way_5shot test rows, %), mean ± std over {n} "
          "seeds\n")
    print("`aligned average` aligns by activations (the default); `output-space KD` is `multi_teacher` with "
          "`mean` into the same architecture, trained in full.\n")
    names = ["plain average", "aligned by weights", "aligned average", "learned combination", "fine-tuned",
             "output-space KD (mean)"]
    print("| family | mean teacher | ensemble | " + " | ".join(names) + " | aligned / mean teacher | "
          "fine-tuned − ensemble | cost vs ensemble |")
    print("|---" * (6 + len(names)) + "|")
    for fam, w in res["weight"].items():
        al = statistics.mean(w["candidates"]["aligned average"]) / statistics.mean(w["teachers"])
        ft = [a - b for a, b in zip(w["candidates"]["fine-tuned"], w["ensemble"])]
        print(f"| {fam} | {fmt(w['teachers'])} | {fmt(w['ensemble'])} | "
              + " | ".join(fmt(w["candidates"][x]) if x in w["candidates"] else "—" for x in names)
              + f" | {100 * al:.0f}% | {fmt_diff(ft)} | 1/{w['teacher_params'] // w['params']} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        with open(sys.argv[2]) as f:
            print_tables(json.load(f))
    else:
        main()

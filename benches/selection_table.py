"""Summarises benches/selection.sh: how well `auto` chooses between scratch, kd, faculty and transfer when
the choice is made by cross-validation over the labeled rows (cv.json, the default) or on the 20%
validation split alone (split.json, config cv_folds 0). Per task and draw, every candidate's test
accuracy is known: scratch's from the scratch run, each method's distilled student (before the scratch
fallback) from its own run, which trains exactly the student `auto` trains when it picks that method
(same split, same seed); kd counts only where its run used auto's teacher. A pick is right when its test
accuracy is the best of the candidates (ties count). Standard library only."""
import json
import statistics as st
import sys
from collections import defaultdict


def mean_sd(v):
    return st.mean(v), (st.stdev(v) if len(v) > 1 else 0.0)


def load(path):
    by = defaultdict(dict)
    for line in json.load(open(path)):
        by[line["task"]][line["method"]] = line
    return by


def main(cv_path, split_path):
    cv, split = load(cv_path), load(split_path)
    print("| task | draws | scratch | kd | faculty | transfer | auto, split | auto, cv | best pick: split | best pick: cv | regret split | regret cv |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tot = defaultdict(list)
    gaps = defaultdict(list)
    for task, ms in cv.items():
        if "auto" not in ms or task not in split or "auto" not in split[task]:
            continue
        a_cv, a_sp = ms["auto"], split[task]["auto"]
        n = len(a_cv["accuracy"])
        hits = {"cv": 0, "split": 0}
        regret = {"cv": [], "split": []}
        for d in range(n):
            cands = {"scratch": ms["scratch"]["accuracy"][d]}
            for m in ("kd", "faculty", "transfer"):
                if m in ms and ms[m]["chosen"][d] == a_cv["chosen"][d]:
                    cands[m] = ms[m]["distilled"][d]
            best = max(cands.values())
            for name, line in (("cv", a_cv), ("split", a_sp)):
                got = line["accuracy"][d]
                hits[name] += got >= best - 1e-9
                regret[name].append(100 * (best - got))
                tot["hits_" + name].append(got >= best - 1e-9)
                tot["regret_" + name].append(100 * (best - got))
            tot["cv_minus_split"].append(100 * (a_cv["accuracy"][d] - a_sp["accuracy"][d]))
        cells = []
        for line in (ms.get("scratch"), ms.get("kd"), ms.get("faculty"), ms.get("transfer"), a_sp, a_cv):
            if line is None:
                cells.append("—")
            else:
                m, s = mean_sd(line["accuracy"])
                cells.append(f"{100*m:.1f} ± {100*s:.1f}")
        # auto against the better single method on this task (delivered accuracy, means over draws)
        singles = [st.mean(ms[m]["accuracy"]) for m in ("faculty", "transfer") if m in ms]
        every = singles + [st.mean(ms["kd"]["accuracy"])] if "kd" in ms else singles
        if singles:
            for name, line in (("cv", a_cv), ("split", a_sp)):
                gaps[name].append(100 * (st.mean(line["accuracy"]) - max(singles)))
                gaps["all_" + name].append(100 * (st.mean(line["accuracy"]) - max(every)))
                gaps["faculty_" + name].append(100 * (st.mean(line["accuracy"]) - st.mean(ms["faculty"]["accuracy"])))
        print(f"| {task} | {n} | " + " | ".join(cells)
              + f" | {hits['split']}/{n} | {hits['cv']}/{n} | {st.mean(regret['split']):.1f} | {st.mean(regret['cv']):.1f} |")
    print("\n| over every task and draw | split | cv |\n|---|---:|---:|")
    k = len(tot["hits_cv"])
    print(f"| picks the candidate best on test | {sum(tot['hits_split'])}/{k} ({100*sum(tot['hits_split'])/k:.0f}%) "
          f"| {sum(tot['hits_cv'])}/{k} ({100*sum(tot['hits_cv'])/k:.0f}%) |")
    print(f"| mean regret (points below the best candidate) | {st.mean(tot['regret_split']):.2f} | {st.mean(tot['regret_cv']):.2f} |")
    if gaps["cv"]:
        print(f"| auto − the better of faculty / transfer on each task (points, mean over tasks) | {st.mean(gaps['split']):+.2f} | {st.mean(gaps['cv']):+.2f} |")
        print(f"| auto − the best of kd / faculty / transfer on each task, in hindsight | {st.mean(gaps['all_split']):+.2f} | {st.mean(gaps['all_cv']):+.2f} |")
        print(f"| auto − faculty (the default method) | {st.mean(gaps['faculty_split']):+.2f} | {st.mean(gaps['faculty_cv']):+.2f} |")
    m, s = mean_sd(tot["cv_minus_split"])
    print(f"\nauto (cv) − auto (split), paired over {k} draws: {m:+.2f} ± {s:.2f} points")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Summarises eval-distill --json runs (benches/multihop.sh) as markdown: per task and student, mean test
accuracy and its spread over draws for every method, the paired differences that matter (multihop vs the
best 1-hop `auto`, ProfWeight / SRatio vs unweighted faculty, transfer vs faculty) with their standard
deviation over draws, and the time multihop costs against the 1-hop auto job (multihop+auto against
auto+auto where the runs tried every weighting). Standard library only."""
import json
import re
import statistics as st
import sys
from collections import defaultdict


def mean_sd(v):
    return st.mean(v), (st.stdev(v) if len(v) > 1 else 0.0)


def main(paths):
    # multihop+auto vs auto+auto: every weighting tried on both sides, the issue's 1-hop "best of kd /
    # faculty / transfer / profweight / sratio" against multihop with the same choices for its first hop
    pairs = [("multihop", "auto"), ("multihop+auto", "auto+auto"), ("auto+auto", "auto"),
             ("faculty+profweight", "faculty"), ("faculty+sratio", "faculty"),
             ("transfer+profweight", "transfer"), ("kd+profweight", "kd"), ("transfer", "faculty"),
             ("auto", "faculty")]
    overall = defaultdict(list)
    for path in paths:
        lines = json.load(open(path))
        # tree_4.json, mlp_2.json, or a copy named e.g. multihop_cv_mlp_2.json
        stem = path.rsplit("/", 1)[-1][:-5]
        student = re.search(r"(tree|mlp|linear|cnn).*$", stem).group(0).replace("_", ":")
        by = defaultdict(dict)
        for l in lines:
            by[l["task"]][l["method"]] = l
        methods = [m for m in dict.fromkeys(l["method"] for l in lines)]
        print(f"\n### student `{student}` (test accuracy, mean ± sd over draws)\n")
        print("| task | " + " | ".join(methods) + " | multihop time / auto time |")
        print("|---|" + "---:|" * len(methods) + "---:|")
        for task, ms in by.items():
            cells = []
            for m in methods:
                if m in ms:
                    a, s = mean_sd(ms[m]["accuracy"])
                    cells.append(f"{100*a:.1f} ± {100*s:.1f}")
                else:
                    cells.append("—")
            ratio = ""
            for a, b in (("multihop", "auto"), ("multihop+auto", "auto+auto")):
                if a in ms and b in ms:
                    ratio = f"{ms[a]['seconds'] / max(ms[b]['seconds'], 1e-9):.1f}x"
            print(f"| {task} | " + " | ".join(cells) + f" | {ratio} |")
        print("\n| paired difference (points, mean ± sd over draws) | " + " | ".join(by) + " | mean |")
        print("|---|" + "---:|" * (len(by) + 1))
        for a, b in pairs:
            row, means = [], []
            for task, ms in by.items():
                if a in ms and b in ms:
                    d = [100 * (x - y) for x, y in zip(ms[a]["accuracy"], ms[b]["accuracy"])]
                    m, s = mean_sd(d)
                    row.append(f"{m:+.1f} ± {s:.1f}")
                    means.append(m)
                    overall[(a, b)].extend(d)
                else:
                    row.append("—")
            if means:
                print(f"| {a} − {b} | " + " | ".join(row) + f" | {st.mean(means):+.2f} |")
    print("\n| over every task, draw and student | mean (points) | sd | draws |\n|---|---:|---:|---:|")
    for (a, b), d in overall.items():
        m, s = mean_sd(d)
        print(f"| {a} − {b} | {m:+.2f} | {s:.2f} | {len(d)} |")


if __name__ == "__main__":
    main(sys.argv[1:])

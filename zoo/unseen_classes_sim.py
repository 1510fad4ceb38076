"""Where does a teacher class that no labeled row shows belong?  A simulation of the label map's lean.

faculty's distillation map (src/rank/metrics.rs, `distillation_map`) spreads each teacher class's
pseudo-rows over the student classes in proportion to 1 + the number of teacher classes seen exactly once
among that student class's labeled rows (Good-Turing). This script draws labeled rows for synthetic
partitions of teacher classes into student classes (each student class j owns K[j] teacher classes, its
n rows spread uniformly over them), and measures, over every teacher class no row shows, how much
probability the lean moves onto the student class that owns it compared with the uniform spread
(positive: the lean helps). Run: python3 zoo/unseen_classes_sim.py (numpy only, about a second).
"""
import numpy as np

SEED = 0
REPS = 4000


def lean(partition, n, rng, reps=REPS):
    gained, unseen_total = 0.0, 0
    for _ in range(reps):
        counts = [np.bincount(rng.integers(0, k, n), minlength=k) for k in partition]
        w = np.array([1.0 + (c == 1).sum() for c in counts])
        w /= w.sum()
        for j, c in enumerate(counts):
            u = int((c == 0).sum())
            gained += u * (w[j] - 1.0 / len(partition))
            unseen_total += u
    return gained / max(unseen_total, 1), unseen_total / reps


def main():
    rng = np.random.default_rng(SEED)
    cases = [
        ("21 / 5 (consonant / vowel)", [21, 5]),
        ("16 / 10", [16, 10]),
        ("13 / 13 (letters A-M / N-Z)", [13, 13]),
        ("5 / 5 (digits even / odd, small / big)", [5, 5]),
        ("4 / 2 / 4 (Fashion coarse)", [4, 2, 4]),
    ]
    print("| teacher classes per student class | rows per class | unseen teacher classes per draw | "
          "probability moved onto the right class |")
    print("|---|---:|---:|---:|")
    for name, partition in cases:
        for n in (5, 10, 20):
            g, u = lean(partition, n, rng)
            print(f"| {name} | {n} | {u:.1f} | {g:+.3f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summarises a sweep's results.csv as a Markdown table: per eps, the mean
over seeds and the half-width of a 95 % t confidence interval.

    python3 scripts/summarize-sweep.py sweep/results.csv
"""
import csv
import math
import sys
from collections import defaultdict

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
COLUMNS = [("accuracy", "accuracy", 4), ("top5", "top-5", 4), ("nll", "NLL", 3), ("ece", "ECE", 3),
           ("ts_ece", "ECE after T", 3), ("mean_confidence", "confidence", 3),
           ("fgsm_accuracy", "FGSM acc.", 3), ("transfer_fgsm_accuracy", "transfer FGSM", 3),
           ("temperature", "T", 2)]


def cell(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = sum(values) / len(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    half = T95.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))
    return f"{m:.{digits}f} ± {half:.{digits}f}"


rows = defaultdict(list)
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f):
        rows[float(r["eps"])].append(r)
print("| eps | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |")
print("|---" * (len(COLUMNS) + 2) + "|")
for eps in sorted(rows):
    runs = rows[eps]
    cells = [cell([float(r[k]) if r[k] != "" else None for r in runs], d) for k, _, d in COLUMNS]
    print(f"| {eps:g} | {len(runs)} | " + " | ".join(cells) + " |")

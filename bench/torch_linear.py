#!/usr/bin/python3
"""Times PyTorch's F.linear + F.cross_entropy(label_smoothing=0.1), forward and backward.

    torch_linear.py N D K THREADS [DTYPE]  ->  prints "best_seconds extra_peak_MB"

DTYPE float32 (default) or bfloat16: the dtype of h, w and b (and so of the
logits and every gradient, as PyTorch computes a bf16 model).

Inputs and .grad tensors are allocated and touched first; one warm-up step,
then the best of 3.  Extra memory: the peak resident set over the steps
minus the resident set before them (as bench_linear measures lsr).
"""
import resource
import sys
import time

import torch
import torch.nn.functional as F


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return float("nan")


n, d, k, threads = (int(v) for v in sys.argv[1:5])
dtype = getattr(torch, sys.argv[5]) if len(sys.argv) > 5 else torch.float32
torch.set_num_threads(threads)
torch.manual_seed(0)
h = (torch.rand(n, d) - 0.5).mul_(2.0).to(dtype).requires_grad_(True)
w = (torch.rand(k, d) - 0.5).mul_(0.2).to(dtype).requires_grad_(True)
b = (torch.rand(k) - 0.5).mul_(0.1).to(dtype).requires_grad_(True)
labels = torch.arange(n) * 7919 % k
for t in (h, w, b):
    t.grad = torch.zeros_like(t)
before = rss_mb()
best = float("inf")
for run in range(4):
    t0 = time.perf_counter()
    F.cross_entropy(F.linear(h, w, b), labels, label_smoothing=0.1).backward()
    t1 = time.perf_counter()
    if run:
        best = min(best, t1 - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print("%.6f %.1f" % (best, peak - before))

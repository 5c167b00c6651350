#!/usr/bin/python3
"""Times PyTorch's F.cross_entropy(label_smoothing=0.1) forward + backward.

    torch_loss.py N K THREADS REPEATS [DTYPE]   ->  prints the best time in seconds

DTYPE is float32 (the default) or bfloat16: the logits' and gradient's type.

At least REPEATS runs and at least a second of them (at most 2000), as
bench_loss times lsr.
"""
import sys
import time

import torch
import torch.nn.functional as F

n, k, threads, repeats = (int(v) for v in sys.argv[1:5])
dtype = getattr(torch, sys.argv[5]) if len(sys.argv) > 5 else torch.float32
torch.set_num_threads(threads)
torch.manual_seed(0)
logits = torch.randn(n, k).to(dtype)
labels = torch.randint(0, k, (n,))
best = float("inf")
spent = 0.0
run = 0
while run <= repeats or (spent < 1.0 and run <= 2000):  # run 0 warms up
    x = logits.detach().requires_grad_(True)
    t0 = time.perf_counter()
    loss = F.cross_entropy(x, labels, label_smoothing=0.1)
    loss.backward()
    t1 = time.perf_counter()
    if run:
        best = min(best, t1 - t0)
    spent += t1 - t0
    run += 1
print("%.9f" % best)

#!/usr/bin/python3
"""Times PyTorch's F.cross_entropy(label_smoothing=0.1) forward + backward.

    torch_loss.py N K THREADS REPEATS [DTYPE [MODE]]  ->  prints the best time in seconds

DTYPE is float32 (the default) or bfloat16: the logits' and gradient's type.
MODE is eager (the default) or compile: the same function through
torch.compile (default mode); prints 0 where this PyTorch has no working
torch.compile (Debian's 1.13 has none), so that the caller writes n/a.

At least REPEATS runs and at least a second of them (at most 2000), as
bench_loss times lsr.  Set OMP_NUM_THREADS=THREADS before starting this
(bench_loss does, and pins the process): torch.compile's generated code
ignores torch.set_num_threads.
"""
import sys
import time

import torch
import torch.nn.functional as F

n, k, threads, repeats = (int(v) for v in sys.argv[1:5])
dtype = getattr(torch, sys.argv[5]) if len(sys.argv) > 5 else torch.float32
mode = sys.argv[6] if len(sys.argv) > 6 else "eager"
torch.set_num_threads(threads)
torch.manual_seed(0)
logits = torch.randn(n, k).to(dtype)
labels = torch.randint(0, k, (n,))


def step(x, y):
    loss = F.cross_entropy(x, y, label_smoothing=0.1)
    loss.backward()
    return loss


if mode == "compile":
    if not hasattr(torch, "compile"):
        print("0")
        sys.exit(0)
    try:
        step = torch.compile(step)
        step(logits.detach().requires_grad_(True), labels)  # compiles
    except Exception:  # a torch.compile that does not work here: n/a
        print("0")
        sys.exit(0)

best = float("inf")
spent = 0.0
run = 0
while run <= repeats or (spent < 1.0 and run <= 2000):  # run 0 warms up
    x = logits.detach().requires_grad_(True)
    t0 = time.perf_counter()
    step(x, labels)
    t1 = time.perf_counter()
    if run:
        best = min(best, t1 - t0)
    spent += t1 - t0
    run += 1
print("%.9f" % best)

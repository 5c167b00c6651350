#!/usr/bin/python3
"""make bench-python: lsr.torch.cross_entropy against F.cross_entropy, in one run.

Forward + backward of the loss alone (label smoothing 0.1, mean) at 64x10,
8192x1000, 4096x32000 and 1024x128256, fp32 and bf16 logits (bf16 goes to the C
kernel as it is and comes back as a bf16 gradient); the per-call cost at 2x3
(the binding's overhead); and one training step of a small language-model head
(Embedding(32000, 256) -> Linear(256, 32000) -> loss, 4096 tokens, SGD) with
each loss, and with lsr's gradient written over the logits (inplace=True).  Each timing is the best of several repetitions (this shared
machine's speed drifts).  Last line:
    speedup-loss-32000 S1 speedup-step-32000 S2 overhead-us U
"""
import sys
import time

import torch
import torch.nn.functional as F

import lsr.torch as lt

torch.manual_seed(0)
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
torch.set_num_threads(THREADS)


def best(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def loss_step(loss_fn, z, y):
    def run():
        x = z.detach().requires_grad_(True)
        loss_fn(x, y, label_smoothing=0.1).backward()
    return run


print(f"torch {torch.__version__}, {THREADS} threads; best of several runs, forward + backward")
print(f"{'shape':>14} {'dtype':>9} {'F.cross_entropy':>16} {'lsr.torch':>10} {'speedup':>8}")
speed_32000 = None
for n, k, reps in ((64, 10, 200), (8192, 1000, 10), (4096, 32000, 5), (1024, 128256, 5)):
    y = torch.randint(0, k, (n,))
    for dtype in (torch.float32, torch.bfloat16):
        z = (torch.randn(n, k) * 2).to(dtype)
        t_torch = best(loss_step(F.cross_entropy, z, y), reps)
        t_lsr = best(loss_step(lt.cross_entropy, z, y), reps)
        print(f"{n:>6} x {k:<6} {str(dtype)[6:]:>9} {t_torch * 1e3:>13.3f} ms {t_lsr * 1e3:>7.3f} ms"
              f" {t_torch / t_lsr:>7.2f}x")
        if k == 32000 and dtype == torch.float32:
            speed_32000 = t_torch / t_lsr

# the binding's own cost: a 2 x 3 call, forward + backward, against PyTorch's
z, y = torch.randn(2, 3), torch.tensor([0, 2])
t_torch = best(loss_step(F.cross_entropy, z, y), 2000)
t_lsr = best(loss_step(lt.cross_entropy, z, y), 2000)
overhead_us = (t_lsr - t_torch) * 1e6
print(f"2 x 3 call: F.cross_entropy {t_torch * 1e6:.1f} us, lsr.torch {t_lsr * 1e6:.1f} us "
      f"(overhead {overhead_us:+.1f} us)")


# one LM-head training step: the GEMMs are the same for both losses
def lm_step(loss_fn):
    torch.manual_seed(1)
    emb, head = torch.nn.Embedding(32000, 256), torch.nn.Linear(256, 32000)
    opt = torch.optim.SGD(list(emb.parameters()) + list(head.parameters()), lr=0.1)
    tokens, targets = torch.randint(0, 32000, (4096,)), torch.randint(0, 32000, (4096,))

    def run():
        opt.zero_grad()
        loss_fn(head(emb(tokens)), targets, label_smoothing=0.1).backward()
        opt.step()
    return run


def lsr_in_place(z, y, **kw):
    return lt.cross_entropy(z, y, inplace=True, **kw)


t_torch = best(lm_step(F.cross_entropy), 3)
t_lsr = best(lm_step(lt.cross_entropy), 3)
t_in_place = best(lm_step(lsr_in_place), 3)
print(f"LM-head step (4096 tokens, 32000 classes): F.cross_entropy {t_torch * 1e3:.1f} ms, "
      f"lsr.torch {t_lsr * 1e3:.1f} ms, {t_torch / t_lsr:.2f}x; inplace=True "
      f"{t_in_place * 1e3:.1f} ms, {t_torch / t_in_place:.2f}x")
print(f"speedup-loss-32000 {speed_32000:.2f} speedup-step-32000 {t_torch / t_lsr:.2f} "
      f"overhead-us {overhead_us:.1f}")

#!/usr/bin/python3
"""Trainer parity with PyTorch, step for step.

Runs a few steps of lsr's trainer (build/lsr_steps: lsr_train itself, fp32,
Adam, `make demo`'s settings) and replays them in PyTorch from lsr's exact
initial weights, on lsr's exact batches (the same examples in the same
order, the same pixel values, the last partial batch as lsr takes it, lsr's
reshuffle at every epoch), with torch.optim.Adam(lr) and
F.cross_entropy(label_smoothing=eps), the model of bench/torch_train.py.
It compares the loss of every step, the gradient of the saved steps and
the weights after them.

The tolerance comes from float rounding, measured rather than guessed:
PyTorch replays the run twice in fp32, once with its default convolutions
(oneDNN, as bench/torch_train.py runs) and once with oneDNN disabled (its
own im2col + BLAS), and once in float64 (exact for this purpose).  The
fp32 runs are correct; they differ from each other and from float64 only
in the order in which they round, and the largest of those three distances
(the spread), grown over the steps, is what "agree to float rounding" means;
it is never 0 (where oneDNN is absent both fp32 runs coincide, but not with
float64).  lsr, a third fp32 implementation, must
stay within C = 4 times that spread (its running maximum over the steps so
far, since the spread of a single step can be 0 by luck while the
divergence it feeds only grows; 4 leaves room for lsr's own summation
orders) plus 8 ulps of the value compared (float32: 8 * 2^-23 relative), of
both PyTorch runs.  Losses are compared as numbers, gradients and weights
per tensor as ||x - x_torch|| relative to ||g|| (gradients) or to the
distance the weights travelled since the start (weights).  A real
difference (initialisation, padding, batches, Adam's epsilon, bias
gradients, data scaling) is not a factor 4 but orders of magnitude, at the
step where it enters.  When lsr parts, the float64 replay shows which side
is off, and the report names the step, the tensor and what enters there.  As the runs
diverge chaotically the spread grows (from ~4e-6 of the loss at step 9 to
~1e-3 at step 24 here), so the check is sharpest over the first epoch, the
first partial batch and the first reshuffle.

    /usr/bin/python3 scripts/check-torch-steps.py [--lsr-steps build/lsr_steps]
        [--data DIR] [--train-limit 1000] [--steps 24] [--seed 0] [--threads 1]
        [--batch 128] [--lr 1e-3] [--eps 0.1] [--start MODEL] [--keep DIR] [--all]
        [--exact]

--start MODEL: start from a trained model file (a fresh Adam, a seeded
order) instead of lsr's initialisation: the late, confident phase of
training.  --exact: also replay in float64 and print each side's distance
from it.  Exit status: 0 agree, 1 lsr parts from PyTorch, 2 usage or
lsr_steps failed, 77 /usr/bin/python3 lacks torch or numpy (skip).  The
defaults (1,000 examples: 8 steps per epoch, the last of 104; 24 steps:
three epochs, two reshuffles, three partial batches) take about 30 s.
"""
import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ModuleNotFoundError as e:  # a python3 without Debian's python3-torch
    if e.name not in ("numpy", "torch"):
        raise  # a broken install is an error, not a skip
    print("check-torch-steps: %s lacks %s (Debian: apt-get install python3-torch "
          "python3-numpy, or scripts/install-deps.sh bench); skipped" % (sys.executable, e.name),
          file=sys.stderr)
    sys.exit(77)

C = 4.0      # lsr may be this many times PyTorch's own fp32 spread from PyTorch
ULPS = 8     # plus this many ulps of the value compared
U32 = 2.0 ** -23


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    return {k: torch.from_numpy(np.frombuffer(data, np.float32,
                                              (v["data_offsets"][1] - v["data_offsets"][0]) // 4,
                                              v["data_offsets"][0]).reshape(v["shape"]).copy())
            for k, v in header.items() if k != "__metadata__"}


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            d = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            nd = d[3]
            dims = [int.from_bytes(d[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
            return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)
    print("check-torch-steps: missing %s" % path, file=sys.stderr)
    sys.exit(2)


# cleverhans-cnn as lsr builds it (src/net/model.c) and bench/torch_train.py
# writes it; PyTorch's module index -> lsr's layer name (docs/model-format.md)
LAYERS = {"0": "layers.0", "2": "layers.2", "4": "layers.4", "7": "layers.7"}


def cleverhans_cnn(tensors, dtype):
    model = nn.Sequential(nn.Conv2d(1, 64, 8, 2, padding=3), nn.ReLU(),
                          nn.Conv2d(64, 128, 6, 2), nn.ReLU(),
                          nn.Conv2d(128, 128, 5, 1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(128, 10))
    model.load_state_dict({"%s.%s" % (i, p): tensors["%s.%s" % (name, p)]
                           for i, name in LAYERS.items() for p in ("weight", "bias")})
    return model.to(dtype)


def lsr_name(torch_name):
    i, p = torch_name.split(".")
    return "%s.%s" % (LAYERS[i], p)


def replay(init, x, y, batches, a, dtype, onednn, saves):
    """The run in PyTorch: losses, and {step: (grads, params after)} in lsr's names, float64."""
    model = cleverhans_cnn(init, dtype)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    losses, saved = [], {}
    with torch.backends.mkldnn.flags(enabled=onednn):
        for k, idx in enumerate(batches, 1):
            loss = F.cross_entropy(model(x[idx].to(dtype)), y[idx], label_smoothing=a.eps)
            opt.zero_grad()
            loss.backward()
            grads = {lsr_name(n): p.grad.detach().double().clone()
                     for n, p in model.named_parameters()} if k in saves else None
            opt.step()
            losses.append(float(loss))
            if k in saves:
                saved[k] = (grads, {lsr_name(n): p.detach().double().clone()
                                    for n, p in model.named_parameters()})
    return losses, saved


def dist(a, b):
    return float((a.double() - b.double()).norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--lsr-steps", default=os.path.join(here, "..", "build", "lsr_steps"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train-limit", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--start", help="a trained model file to start from")
    ap.add_argument("--keep", help="write lsr_steps' output here (else a temporary directory)")
    ap.add_argument("--all", action="store_true", help="print every step, not an excerpt")
    ap.add_argument("--exact", action="store_true", help="also replay in float64")
    a = ap.parse_args()
    if not os.access(a.lsr_steps, os.X_OK):
        print("check-torch-steps: %s: not built (make build)" % a.lsr_steps, file=sys.stderr)
        return 2

    # lsr's run
    tmp = None
    out = a.keep
    if not out:
        tmp = tempfile.TemporaryDirectory(prefix="lsr-steps-")
        out = tmp.name
    # the data as lsr holds it: the first N examples, byte * (1.0f / 255.0f) in float
    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte"))[:a.train_limit]
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte"))[:a.train_limit]
    n = images.shape[0]
    x = torch.from_numpy(images.astype(np.float32) * np.float32(1.0 / 255.0))[:, None]
    y = torch.from_numpy(labels.astype(np.int64))
    per_epoch = (n + a.batch - 1) // a.batch
    # the parameters and gradients of steps 1 and 2, of the first epoch's last
    # (partial) batch, and of the last step
    saves = sorted({1, 2, per_epoch, a.steps} & set(range(1, a.steps + 1)))
    cmd = [a.lsr_steps, "--out-dir", out, "--data", a.data, "--train-limit", str(a.train_limit),
           "--steps", str(a.steps), "--seed", str(a.seed), "--threads", str(a.threads),
           "--batch", str(a.batch), "--lr", repr(a.lr), "--smoothing", repr(a.eps),
           "--save-at", ",".join(map(str, saves))] + (["--start", a.start] if a.start else [])
    run = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        print("check-torch-steps: failed: %s\n%s" % (" ".join(cmd), run.stderr.strip()), file=sys.stderr)
        return 2
    rows = [l.split("\t") for l in open(os.path.join(out, "steps.tsv")).read().split("\n")[1:] if l]
    lsr_loss = [float(r[3]) for r in rows]
    lsr_batch = [int(r[2]) for r in rows]
    orders = [np.array(l.split(), dtype=np.int64) for l in open(os.path.join(out, "order.txt"))]
    init = load_safetensors(os.path.join(out, "init.safetensors"))
    lsr_saved = {k: tuple({name: t.double() for name, t in
                           load_safetensors(os.path.join(out, "%s_%d.safetensors" % (what, k))).items()}
                          for what in ("grads", "params"))
                 for k in saves}
    if any(len(o) != n for o in orders):
        print("check-torch-steps: lsr trained on %d examples, not the first %d" % (len(orders[0]), n),
              file=sys.stderr)
        return 1

    levels = torch.arange(256, dtype=torch.float32)
    scaling_ulps = int(((levels * np.float32(1.0 / 255.0)) != (levels / 255)).sum())
    batches = []
    for k in range(a.steps):
        e, s = divmod(k, per_epoch)
        batches.append(torch.from_numpy(orders[e][s * a.batch:(s + 1) * a.batch]))

    failures = []  # (step, what, hint)
    for k, idx in enumerate(batches, 1):
        if idx.numel() != lsr_batch[k - 1]:
            failures.append((k, "lsr's batch has %d examples, the replay's %d"
                             % (lsr_batch[k - 1], idx.numel()), "the last partial batch"))
    # lsr's initialisation is cleverhans' N(0, 1/fan_in) with zero biases
    if not a.start:
        for name, t in sorted(init.items()):
            if name.endswith(".bias"):
                if t.abs().max() != 0:
                    failures.append((0, "%s is not zero" % name, "initialisation"))
                continue
            fan_in = t[0].numel()
            sd, mean = float(t.double().std()) * math.sqrt(fan_in), float(t.double().mean())
            se = 1 / math.sqrt(t.numel())  # of the mean, in units of the sd; the sd's is se/sqrt(2)
            if abs(sd - 1) > 5 * se / math.sqrt(2) or abs(mean) * math.sqrt(fan_in) > 5 * se:
                failures.append((0, "%s: mean %.2e, sd %.4f/sqrt(fan_in): not N(0, 1/fan_in)"
                                 % (name, mean, sd), "initialisation"))

    torch.set_num_threads(a.threads)
    ref, ref_saved = replay(init, x, y, batches, a, torch.float32, True, saves)
    nat, nat_saved = replay(init, x, y, batches, a, torch.float32, False, saves)
    exact, exact_saved = replay(init, x, y, batches, a, torch.float64, True, saves)

    # losses
    table, spread = [], 0.0
    for k in range(1, a.steps + 1):
        ll, lr_, ln = lsr_loss[k - 1], ref[k - 1], nat[k - 1]
        spread = max(spread, abs(lr_ - ln), abs(lr_ - exact[k - 1]), abs(ln - exact[k - 1]))
        tol = C * spread + ULPS * U32 * abs(ln)
        off = max(abs(ll - lr_), abs(ll - ln))
        table.append([k, (k - 1) // per_epoch + 1, lsr_batch[k - 1], ll, lr_, ln, off,
                      abs(lr_ - ln), tol, off <= tol])
        if off > tol:
            first_of_epoch = (k - 1) % per_epoch == 0 and k > 1
            partial = lsr_batch[k - 1] != a.batch
            after_partial = k > 1 and lsr_batch[k - 2] != a.batch
            hint = ("the forward pass or the loss at the initial weights (padding, data scaling, "
                    "the weights' layout, the loss)" if k == 1 else
                    "; ".join(h for h, on in (
                        ("this batch's examples: the new epoch's order (reshuffle)", first_of_epoch),
                        ("this partial batch's loss (its mean over %d)" % lsr_batch[k - 1], partial),
                        ("the update of step %d, a partial batch of %d (its gradient's mean)"
                         % (k - 1, lsr_batch[k - 2]), after_partial),
                        ("the update of step %d (gradients, optimizer)" % (k - 1), not after_partial))
                        if on))
            failures.append((k, "loss lsr %.9g, PyTorch %.9g (oneDNN) / %.9g (native): %.3g apart, "
                             "tolerance %.3g" % (ll, lr_, ln, off, tol), hint))

    # gradients (before the step) and weights (after it), per tensor
    wlines = []
    for k in saves:
        for kind, slot in (("gradient", 0), ("weights", 1)):
            worst = None
            for name in sorted(init):
                t_lsr, t_ref, t_nat = lsr_saved[k][slot][name], ref_saved[k][slot][name], \
                    nat_saved[k][slot][name]
                scale = float(t_nat.norm()) if slot == 0 else dist(t_nat, init[name])
                scale = max(scale, 1e-30)
                e_lsr = max(dist(t_lsr, t_ref), dist(t_lsr, t_nat)) / scale
                t_exact = exact_saved[k][slot][name]
                e_torch = max(dist(t_ref, t_nat), dist(t_ref, t_exact), dist(t_nat, t_exact)) / scale
                tol = C * e_torch + ULPS * U32 * float(t_nat.norm()) / scale
                ok = e_lsr <= tol
                line = "%-8s %4d  %-15s %.2e     %.2e      %.2e%s" % (
                    kind, k, name, e_lsr, e_torch, tol, "" if ok else "  PARTS")
                if a.all or not ok:
                    wlines.append(line)
                if worst is None or e_lsr / tol > worst[0]:
                    worst = (e_lsr / tol, line)
                if not ok:
                    bias = name.endswith(".bias")
                    partial = lsr_batch[k - 1] != a.batch
                    hint = (("the bias gradient" if bias else "the weight gradient") + " of " + name
                            + (" in a partial batch of %d (its mean)" % lsr_batch[k - 1]
                               if partial else "")
                            if slot == 0 else
                            "the optimizer's update (Adam: epsilon placement, bias correction, "
                            "moments)")
                    failures.append((k + (0.5 if slot else 0), "%s of %s after step %d: %.3g apart "
                                     "(relative), tolerance %.3g" % (kind, name, k, e_lsr, tol), hint))
            if not a.all and worst[1] not in wlines:
                wlines.append(worst[1] + "  (the worst of %d tensors)" % len(init))

    print("step epoch batch  loss lsr     torch oneDNN  torch native  |lsr-torch|  fp32 spread   tolerance")
    for r in table:
        if a.all or r[0] <= 3 or r[0] > a.steps - 2 or r[2] != a.batch or not r[9] or \
                (r[0] - 1) % per_epoch == 0:
            print("%4d %5d %5d  %.8f   %.8f    %.8f    %.1e      %.1e       %.1e%s"
                  % tuple(r[:9] + ["" if r[9] else "  PARTS"]))
    print("tensor   step  name            |lsr-torch|  torch spread  tolerance  (relative: "
          "gradients to their norm, weights to the distance travelled)")
    for line in wlines:
        print(line)
    print("data scaling: lsr byte * (1.0f/255.0f) (used here); byte / 255 (bench/torch_train.py) "
          "differs in the last bit for %d of 256 byte values" % scaling_ulps)

    if a.exact or failures:
        print("float64 replay: |loss - exact| of lsr and of PyTorch (oneDNN), worst over the steps: "
              "%.2e and %.2e" % (max(abs(l - e) for l, e in zip(lsr_loss, exact)),
                                 max(abs(l - e) for l, e in zip(ref, exact))))
        for k, what, hint in failures[:1]:
            if k >= 1 and int(k) == k:
                print("  at step %d: lsr %.9g, PyTorch %.9g, exact %.9g"
                      % (k, lsr_loss[k - 1], ref[k - 1], exact[k - 1]))
    if failures:
        failures.sort(key=lambda f: f[0])
        print("check-torch-steps: lsr parts from PyTorch; first at %s" % (
            "the initialisation" if failures[0][0] == 0 else "step %d" % int(failures[0][0])))
        for k, what, hint in failures[:10]:
            print("  %s  (enters with: %s)" % (what, hint))
        return 1
    worst = max(r[6] / r[8] for r in table)
    print("check-torch-steps: %d steps on %d examples (%d per epoch, seed %d%s) agree with PyTorch "
          "to float rounding (the worst step at %.2f of its tolerance)"
          % (a.steps, n, per_epoch, a.seed, ", from " + a.start if a.start else "", worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""One epoch of the cleverhans tutorial CNN on Fashion-MNIST in PyTorch, the
same model, initialisation scheme and settings as `lsr train`, for
`make bench-train`.

    torch_train.py DATA_DIR THREADS EPOCHS SMOOTHING [TRAIN_LIMIT|all] [fp32|bf16] [SEED]
prints:  seconds_per_epoch test_accuracy

bf16: the training steps run under torch.autocast("cpu", bfloat16), PyTorch's
mixed precision (fp32 parameters, bf16 convolutions), the counterpart of
`lsr train --precision bf16`; evaluation stays fp32.
"""
import contextlib
import gzip
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(d, name):
    for p in (os.path.join(d, name), os.path.join(d, name + ".gz")):
        if os.path.exists(p):
            return p
    raise SystemExit("missing %s in %s" % (name, d))


data_dir, threads, epochs, eps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
limit = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] != "all" else None
bf16 = len(sys.argv) > 6 and sys.argv[6] == "bf16"
precision = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
torch.set_num_threads(threads)
torch.manual_seed(int(sys.argv[7]) if len(sys.argv) > 7 else 0)
xtr = torch.tensor(read_idx(find(data_dir, "train-images-idx3-ubyte")), dtype=torch.float32)[:limit, None] / 255
ytr = torch.tensor(read_idx(find(data_dir, "train-labels-idx1-ubyte")), dtype=torch.int64)[:limit]
xte = torch.tensor(read_idx(find(data_dir, "t10k-images-idx3-ubyte")), dtype=torch.float32)[:, None] / 255
yte = torch.tensor(read_idx(find(data_dir, "t10k-labels-idx1-ubyte")), dtype=torch.int64)
k = int(max(ytr.max(), yte.max())) + 1

# cleverhans ModelBasicCNN; TensorFlow SAME for 28 -> 14 with an 8x8 kernel
# and stride 2 pads 3 on each side.
model = nn.Sequential(
    nn.Conv2d(1, 64, 8, stride=2, padding=3), nn.ReLU(),
    nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(),
    nn.Conv2d(128, 128, 5, stride=1), nn.ReLU(),
    nn.Flatten(), nn.Linear(128, k))
with torch.no_grad():  # N(0, 1/fan_in), zero biases
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.normal_(0, 1 / math.sqrt(fan_in))
            m.bias.zero_()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
n = xtr.shape[0]
start = time.perf_counter()
for epoch in range(epochs):
    perm = torch.randperm(n)
    for i in range(0, n, 128):
        idx = perm[i:i + 128]
        with precision():
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx], label_smoothing=eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
per_epoch = (time.perf_counter() - start) / epochs
with torch.no_grad():
    model.eval()
    acc = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
              for i in range(0, xte.shape[0], 1000)) / xte.shape[0]
print("%.3f %.4f" % (per_epoch, acc))

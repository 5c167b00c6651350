#!/usr/bin/python3
"""The cleverhans tutorial CNN in PyTorch on Fashion-MNIST (Debian's
dataset-fashion-mnist), trained with lsr's loss: label smoothing 0.1 toward
the training class frequencies, H(q, p) and H(u, p) printed per epoch.

    make python                      # installs lsr for /usr/bin/python3
    /usr/bin/python3 examples/pytorch_cnn.py [EPOCHS] [TRAIN_LIMIT]
"""
import gzip
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

import lsr.torch

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(name):
    path = os.path.join(DATA, name)
    path = path if os.path.exists(path) else path + ".gz"
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(dims)


epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
torch.manual_seed(0)
x = torch.tensor(read_idx("train-images-idx3-ubyte"), dtype=torch.float32)[:limit, None] / 255
y = torch.tensor(read_idx("train-labels-idx1-ubyte"), dtype=torch.int64)[:limit]
x_test = torch.tensor(read_idx("t10k-images-idx3-ubyte"), dtype=torch.float32)[:, None] / 255
y_test = torch.tensor(read_idx("t10k-labels-idx1-ubyte"), dtype=torch.int64)

# cleverhans ModelBasicCNN (TensorFlow SAME for 28 -> 14, kernel 8, stride 2: pad 3)
model = nn.Sequential(nn.Conv2d(1, 64, 8, stride=2, padding=3), nn.ReLU(),
                      nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(),
                      nn.Conv2d(128, 128, 5), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
with torch.no_grad():  # N(0, 1/fan_in), zero biases, as cleverhans
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.normal_(0, 1 / math.sqrt(m.weight[0].numel()))
            m.bias.zero_()

prior = torch.bincount(y, minlength=10).float()
prior /= prior.sum()  # u(k): the training class frequencies
criterion = lsr.torch.CrossEntropyLoss(label_smoothing=0.1, prior=prior)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(1, epochs + 1):
    label_ce = prior_ce = seen = 0.0
    for idx in torch.randperm(len(x)).split(128):
        loss, stats = lsr.torch.cross_entropy(model(x[idx]), y[idx], label_smoothing=0.1,
                                              prior=prior, return_stats=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        label_ce += stats.label_ce * len(idx)
        prior_ce += stats.prior_ce * len(idx)
        seen += len(idx)
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        test_loss = criterion(model(x_test), y_test).item()
    print(f"epoch {epoch}: H(q,p) {label_ce / seen:.4f}  H(u,p) {prior_ce / seen:.4f}  "
          f"test loss {test_loss:.4f}  test accuracy {acc:.4f}")

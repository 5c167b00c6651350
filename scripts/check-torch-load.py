#!/usr/bin/python3
"""Loads a cleverhans-cnn model file written by lsr into PyTorch, with the
few lines of docs/model-format.md, and prints its Fashion-MNIST test
accuracy: it must equal what `lsr eval` reports for the same file.

    /usr/bin/python3 scripts/check-torch-load.py build/demo-model.safetensors
"""
import json, struct, gzip, numpy as np, torch, torch.nn as nn

def load_lsr(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {k: torch.from_numpy(np.frombuffer(data, np.float32,
                   (v["data_offsets"][1] - v["data_offsets"][0]) // 4,
                   v["data_offsets"][0]).reshape(v["shape"]).copy())
               for k, v in header.items() if k != "__metadata__"}
    return header["__metadata__"], tensors

import sys
meta, t = load_lsr(sys.argv[1] if len(sys.argv) > 1 else "build/demo-model.safetensors")
model = nn.Sequential(nn.Conv2d(1, 64, 8, 2, padding=3), nn.ReLU(),
                      nn.Conv2d(64, 128, 6, 2), nn.ReLU(),
                      nn.Conv2d(128, 128, 5, 1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(128, 10))
model.load_state_dict({"0.weight": t["layers.0.weight"], "0.bias": t["layers.0.bias"],
                       "2.weight": t["layers.2.weight"], "2.bias": t["layers.2.bias"],
                       "4.weight": t["layers.4.weight"], "4.bias": t["layers.4.bias"],
                       "7.weight": t["layers.7.weight"], "7.bias": t["layers.7.bias"]})
def idx(p):
    d = gzip.open(p).read(); nd = d[3]
    dims = [int.from_bytes(d[4+4*i:8+4*i], "big") for i in range(nd)]
    return np.frombuffer(d, np.uint8, offset=4+4*nd).reshape(dims)
x = torch.tensor(idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"), dtype=torch.float32)[:, None] / 255
y = torch.tensor(idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"), dtype=torch.int64)
with torch.no_grad():
    acc = (model(x).argmax(1) == y).float().mean().item()
print("PyTorch accuracy of the lsr model: %.4f" % acc, meta["architecture"])

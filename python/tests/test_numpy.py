"""lsr.cross_entropy on NumPy arrays: the fast kernel through the binding
against the C library's double-precision reference (same call, same options),
closed forms, and refusals."""
import ctypes

import numpy as np
import pytest

import lsr
from lsr import _lib

RNG = np.random.default_rng(0)


def reference(logits, target, **kw):
    """The same call through lsr_cross_entropy_reference (double precision)."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    soft = np.asarray(target).dtype.kind == "f"
    target = np.ascontiguousarray(target, dtype=np.float32 if soft else np.int64)
    n, k = logits.shape
    grad = np.empty_like(logits)
    reduction = kw.get("reduction", "mean")
    loss = np.zeros(n if reduction == "none" else 1, dtype=np.float32)
    opt = lsr._options(kw.get("label_smoothing", 0.0), kw.get("convention", "all"),
                       kw.get("ignore_index", -100), reduction, kw.get("z_loss", 0.0), 1)
    prior = None if kw.get("prior") is None else np.ascontiguousarray(kw["prior"], np.float32)
    weight = None if kw.get("weight") is None else np.ascontiguousarray(kw["weight"], np.float32)
    opt.prior = lsr._ptr(prior, ctypes.c_float)
    opt.class_weights = lsr._ptr(weight, ctypes.c_float)
    fn = (_lib.lib.lsr_cross_entropy_soft_reference if soft
          else _lib.lib.lsr_cross_entropy_reference)
    status = fn(lsr._ptr(loss, ctypes.c_float), lsr._ptr(grad, ctypes.c_float), None,
                lsr._ptr(logits, ctypes.c_float),
                lsr._ptr(target, ctypes.c_float if soft else ctypes.c_int64), n, k, k,
                ctypes.byref(opt))
    assert status == 0, _lib.lib.lsr_last_error()
    return loss, grad


@pytest.mark.parametrize("case", range(24))
def test_fast_matches_reference(case):
    """Every option through the binding: loss and gradient within float32 rounding of the
    double reference.  Loss: 2e-6 relative (K <= 300 terms summed in float32).  Gradient
    entry p_k A - c_k: its float parts carry (K + 8) u of relative error (u = 2^-24: the
    float sum of K exps behind A, the exp's 3 ulp and the product's, the subtraction's),
    and |p_k A| <= |g_k| + |c_k| with c_k at most the largest weight times the largest
    target value over the mean's divisor."""
    n, k = int(RNG.integers(1, 40)), int(RNG.integers(2, 300))
    logits = RNG.normal(0, 3, (n, k))
    kw = dict(label_smoothing=float(RNG.choice([0.0, 0.1, 0.3])),
              convention=str(RNG.choice(["all", "others"])),
              reduction=str(RNG.choice(["mean", "sum", "none"])),
              z_loss=float(RNG.choice([0.0, 1e-3])))
    if case % 3 == 0:
        kw["weight"] = RNG.uniform(0.1, 2.0, k)
    if case % 4 == 1:
        p = RNG.uniform(0, 1, k)
        kw["prior"] = p / p.sum()
    if case % 5 == 2:
        target = RNG.uniform(0, 1, (n, k))
    else:
        target = RNG.integers(0, k, n)
        target[RNG.uniform(size=n) < 0.2] = -100
    r = lsr.cross_entropy(logits, target, **kw)
    loss, grad = reference(logits, target, **kw)
    np.testing.assert_allclose(r.loss, loss if kw["reduction"] == "none" else loss[0],
                               rtol=2e-6, atol=1e-6)
    counted = np.ones(n, bool) if target.ndim == 2 else target != -100
    w = kw.get("weight")
    divisor = 1.0
    if kw["reduction"] == "mean":
        if target.ndim == 2:
            divisor = n
        else:
            divisor = (w[target[counted]].sum() if w is not None else counted.sum()) or 1.0
    c_max = (1.0 if w is None else w.max()) * (max(1.0, target.max()) if target.ndim == 2
                                                else 1.0) / divisor
    bound = (k + 8) * 2.0**-24 * (np.abs(grad) + 2 * c_max)
    worst = np.max(np.abs(r.grad.astype(np.float64) - grad) - bound)
    assert worst <= 0, f"gradient off by {worst:.3g} beyond its rounding bound"


def test_plain_cross_entropy_closed_form():
    """eps = 0: the loss is -log softmax(z)[y] (double, to float rounding)."""
    z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    y = np.array([2, 0])
    lse = np.log(np.exp(z).sum(1))
    want = np.mean(lse - z[[0, 1], y])
    r = lsr.cross_entropy(z, y)
    assert abs(r.loss - want) < 1e-6 * abs(want)
    assert r.stats.valid_rows == 2 and r.stats.top1_hits == 1


def test_refusals_name_the_problem():
    """Bad input raises lsr.Error with the C status and the C library's message."""
    with pytest.raises(lsr.Error) as e:
        lsr.cross_entropy(np.zeros((2, 3)), [0, 3])
    assert e.value.status == "LSR_ERROR_LABEL" and "3" in str(e.value)
    with pytest.raises(lsr.Error) as e:
        lsr.cross_entropy(np.zeros((2, 3)), [0, 1], label_smoothing=1.5)
    assert e.value.status == "LSR_ERROR_SMOOTHING"
    with pytest.raises(ValueError):
        lsr.cross_entropy(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError):
        lsr.cross_entropy(np.zeros((2, 3)), [0, 1], weight=np.ones(2))


def test_a_library_of_another_version_is_refused():
    """The loader compares the structs it mirrors with the library's sizes, and says which."""
    class Size:
        def __init__(self, value):
            self.value, self.restype, self.argtypes = value, None, None

        def __call__(self):
            return self.value

    class Fake:
        _name = "liblsr.so.fake"

    fake = Fake()
    fake.lsr_loss_options_size = Size(48)  # the struct before its dtype fields
    fake.lsr_loss_stats_size = Size(ctypes.sizeof(_lib.LossStats))
    with pytest.raises(ImportError, match="48 bytes"):
        _lib.check_abi(fake)
    del fake.lsr_loss_options_size
    with pytest.raises(ImportError, match="older"):
        _lib.check_abi(fake)
    _lib.check_abi(_lib.lib)  # the library this package runs on passes

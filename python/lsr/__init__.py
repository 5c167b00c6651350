"""lsr: softmax cross-entropy with label-smoothing regularization, from Python.

The loss of lsr's C library (liblsr) on NumPy arrays: one fused pass gives the
loss, its gradient with respect to the logits, and the statistics.  For
PyTorch, `lsr.torch.cross_entropy` is a drop-in for `F.cross_entropy`.

The smoothed target of a row with label y is q'(k) = (1 - eps) [k = y] + eps u(k):

- convention "all" (PyTorch's): u(k) = 1/K, so the label gets 1 - eps + eps/K;
- convention "others" (darknet's, Megatron's): u(k) = 1/(K-1) off the label,
  so the label gets exactly 1 - eps;
- prior: any distribution u(k) you give, e.g. the class frequencies.

The loss splits into (1 - eps) H(q, p) + eps H(u, p); the statistics report
both terms.
"""
import collections

import numpy as np

from . import _lib

__all__ = ["cross_entropy", "Stats", "Result", "Error"]

Stats = collections.namedtuple(
    "Stats", "label_ce prior_ce valid_rows top1_hits mean_max_prob mean_lse")
Stats.__doc__ = """Means over the rows not ignored: H(q, p) against the label (label_ce),
H(u, p) against the smoothing distribution (prior_ce), how many rows count
(valid_rows), how many have their label's logit at the row's maximum
(top1_hits), the mean largest probability and the mean log-sum-exp."""

Result = collections.namedtuple("Result", "loss grad stats")
Result.__doc__ = """loss: a float (reduction 'mean' or 'sum') or an (N,) array ('none');
grad: (N, K) float32, the gradient of the reduced loss; stats: Stats."""


class Error(ValueError):
    """A call lsr refused: .status is the C status name, the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _f32(a):
    return None if a is None else np.ascontiguousarray(a, dtype=np.float32)


def _ptr(a, ctype):
    import ctypes
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctype))


def _options(label_smoothing, convention, ignore_index, reduction, z_loss, threads):
    opt = _lib.lib.lsr_loss_options_default()
    if convention not in _lib.CONVENTIONS:
        raise ValueError(f"convention {convention!r}: must be 'all' or 'others'")
    if reduction not in _lib.REDUCTIONS:
        raise ValueError(f"reduction {reduction!r}: must be 'mean', 'sum' or 'none'")
    opt.smoothing = float(label_smoothing)
    opt.convention = _lib.CONVENTIONS[convention]
    opt.ignore_index = int(ignore_index)
    opt.reduction = _lib.REDUCTIONS[reduction]
    opt.z_loss = float(z_loss)
    opt.threads = int(threads)
    return opt


def call(logits, target, *, label_smoothing=0.0, convention="all", prior=None, weight=None,
         ignore_index=-100, reduction="mean", z_loss=0.0, threads=0, grad=None):
    """The C call behind cross_entropy and lsr.torch, on arrays already checked:
    logits (N, K) C-contiguous, float32 or uint16 (bfloat16 bits); target (N,) int64 or
    (N, K) float32; grad (N, K) float32 or uint16 (bfloat16) to write, or None; grad may
    be logits itself (in place, same dtype).  Returns (loss array, Stats)."""
    import ctypes
    n, k = logits.shape
    soft = target.dtype != np.int64
    prior = _f32(prior)
    weight = _f32(weight)
    for a, name in ((prior, "prior"), (weight, "weight")):
        if a is not None and a.shape != (k,):
            raise ValueError(f"{name}: shape {a.shape}, expected ({k},)")
    opt = _options(label_smoothing, convention, ignore_index, reduction, z_loss, threads)
    opt.prior = _ptr(prior, ctypes.c_float)
    opt.class_weights = _ptr(weight, ctypes.c_float)
    opt.logits_dtype = _lib.BFLOAT16 if logits.dtype == np.uint16 else _lib.FLOAT32
    if grad is not None:
        opt.grad_dtype = _lib.BFLOAT16 if grad.dtype == np.uint16 else _lib.FLOAT32
    loss = np.zeros(n if reduction == "none" else 1, dtype=np.float32)
    stats = _lib.LossStats()
    fn = _lib.lib.lsr_cross_entropy_soft if soft else _lib.lib.lsr_cross_entropy
    status = fn(_ptr(loss, ctypes.c_float), None if grad is None else grad.ctypes.data,
                ctypes.byref(stats), logits.ctypes.data,
                _ptr(target, ctypes.c_float if soft else ctypes.c_int64), n, k, k,
                ctypes.byref(opt))
    if status != 0:
        raise Error(_lib.status_name(status), _lib.lib.lsr_last_error().decode(errors="replace"))
    return loss, Stats(stats.label_ce, stats.prior_ce, stats.valid_rows, stats.top1_hits,
                       stats.mean_max_prob, stats.mean_lse)


def cross_entropy(logits, target, *, label_smoothing=0.0, convention="all", prior=None,
                  weight=None, ignore_index=-100, reduction="mean", z_loss=0.0, threads=0):
    """Label-smoothed softmax cross-entropy of NumPy arrays, with its gradient.

    logits           (N, K) array (converted to float32, C order)
    target           (N,) integer labels in [0, K) or ignore_index, or (N, K)
                     probability targets (rows need not sum to 1)
    label_smoothing  eps in [0, 1]
    convention       'all' (eps/K to every class, PyTorch) or 'others'
                     (eps/(K-1) to the other classes); ignored with a prior
    prior            (K) smoothing distribution u, or None for the convention's
    weight           (K) class weights (PyTorch's semantics), or None
    ignore_index     rows with this label are left out (integer labels only)
    reduction        'mean' (over the weights of the rows counted), 'sum', 'none'
    z_loss           lambda >= 0: adds lambda * logsumexp(z)^2 per row
    threads          0: OpenMP's default; the result does not depend on it

    Returns Result(loss, grad, stats).  Raises lsr.Error naming the argument or
    row when the C library refuses the call (it never prints or exits).  With
    reduction 'mean' and no row counted, the loss is 0 (PyTorch: NaN).
    """
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits.ndim != 2:
        raise ValueError(f"logits: {logits.ndim} dimensions, expected 2 (N, K)")
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        target = np.ascontiguousarray(target, dtype=np.int64)
        if target.shape != (logits.shape[0],):
            raise ValueError(f"target: shape {target.shape}, expected ({logits.shape[0]},)")
    else:
        target = np.ascontiguousarray(target, dtype=np.float32)
        if target.shape != logits.shape:
            raise ValueError(f"target: shape {target.shape}, expected {logits.shape}")
    grad = np.empty_like(logits)
    loss, stats = call(logits, target, label_smoothing=label_smoothing, convention=convention,
                       prior=prior, weight=weight, ignore_index=ignore_index,
                       reduction=reduction, z_loss=z_loss, threads=threads, grad=grad)
    return Result(loss if reduction == "none" else float(loss[0]), grad, stats)

"""lsr for PyTorch: a drop-in for torch.nn.functional.cross_entropy.

    import lsr.torch
    loss = lsr.torch.cross_entropy(logits, labels, label_smoothing=0.1)
    loss = lsr.torch.cross_entropy(logits, labels, label_smoothing=0.1,
                                   prior=class_frequencies)      # u(k) of your own
    loss = lsr.torch.cross_entropy(logits, labels, label_smoothing=0.1,
                                   convention="others")         # eps/(K-1), target 1 - eps
    criterion = lsr.torch.CrossEntropyLoss(label_smoothing=0.1)

Same signature and semantics as F.cross_entropy (PyTorch 1.13), plus
keyword-only extras: prior, convention, z_loss, return_stats.  The loss and its
gradient come from one pass of lsr's C kernel; backward only scales the saved
gradient.  CPU tensors only; float32 and bfloat16 go to the kernel as they are
(bfloat16 is computed in float32 inside it and its gradient written in bfloat16,
rounded to nearest even); float16 and float64 are converted to float32 and their
gradient back to the input's dtype.
The kernel uses torch.get_num_threads() threads; its result does not depend on
the count.
"""
import numpy as np
import torch
from torch.nn.modules.loss import _WeightedLoss

import torch.nn.functional as F

from . import Error, Stats, call

# statuses where lsr refuses what PyTorch computes (NaN, infinities, negative
# weights or targets): such calls are computed by F.cross_entropy itself
_PYTORCH_COMPUTES = ("LSR_ERROR_NONFINITE", "LSR_ERROR_TARGET", "LSR_ERROR_WEIGHT")

__all__ = ["cross_entropy", "CrossEntropyLoss", "linear_cross_entropy", "LinearCrossEntropyLoss",
           "Stats"]

_REDUCTIONS = ("mean", "sum", "none")


def _to_f32(x):
    """A floating-point tensor's values as a C-contiguous float32 NumPy array."""
    x = x.detach()
    if x.dtype == torch.float32:
        return x.contiguous().numpy()
    if x.dtype == torch.bfloat16:  # NumPy has no bfloat16: widened bit for bit
        return _bf16_widen(_bf16_bits(x))
    return x.contiguous().numpy().astype(np.float32)


def _bf16_bits(x):
    """A bfloat16 tensor's values as a C-contiguous uint16 NumPy array of their bits."""
    return x.detach().contiguous().view(torch.int16).numpy().view(np.uint16)


def _bf16_widen(bits):
    """uint16 bfloat16 bits as float32 values (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _from_f32(a, dtype):
    """float32 array a as a tensor of dtype (bfloat16: rounded to nearest even; NaN stays
    NaN), converted by NumPy."""
    if dtype == torch.float32:
        return torch.from_numpy(a)
    if dtype == torch.bfloat16:
        u = a.view(np.uint32)
        rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
        nan = np.isnan(a)
        if nan.any():
            rounded[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
        return torch.from_numpy(rounded.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a.astype(torch.empty(0, dtype=dtype).numpy().dtype))


class _Loss(torch.autograd.Function):
    """Forward: the C kernel's loss with its gradient; backward: that gradient
    times grad_output (per row for reduction 'none')."""

    @staticmethod
    def forward(ctx, logits, target, kwargs, nan_rows, stats_out, want_grad, inplace):
        # bfloat16 goes to the kernel as its bits, the gradient comes back in bfloat16
        z = _bf16_bits(logits) if logits.dtype == torch.bfloat16 else _to_f32(logits)
        t = target.detach().contiguous()
        # buffers of NumPy's, converted by NumPy: Debian's PyTorch allocates, fills and
        # converts large tensors an order of magnitude slower than NumPy on this kind of
        # machine; in place, the logits' own memory (z is a view of it)
        if inplace:
            grad = z
        else:
            grad = np.empty(z.shape, dtype=z.dtype) if want_grad else None
        reduction = kwargs["reduction"]
        loss, stats = call(z, t.numpy(), grad=grad, **kwargs)
        loss = torch.from_numpy(loss)
        if nan_rows is not None:  # mean over no weight: PyTorch's 0/0
            loss = torch.full_like(loss, float("nan"))
            if grad is not None:
                grad[nan_rows.numpy()] = 0x7FC0 if grad.dtype == np.uint16 else np.nan
        stats_out.append(stats)
        ctx.grad = grad  # a NumPy array of the kernel's, handed out only in place
        ctx.reduction = reduction
        ctx.dtype = logits.dtype
        ctx.inplace = inplace
        loss = loss if reduction == "none" else loss.reshape(())
        if not inplace:
            return loss
        # the input now holds its gradient: autograd must know (a later use of what
        # an earlier operation saved of it then raises instead of reading the gradient)
        ctx.mark_dirty(logits)
        ctx.set_materialize_grads(False)
        return loss, logits

    @staticmethod
    def backward(ctx, grad_output, grad_overwritten=None):
        if grad_overwritten is not None:
            raise RuntimeError("lsr.torch.cross_entropy(inplace=True): the input was "
                               "overwritten by its gradient and cannot be used again")
        if ctx.inplace:
            return _backward_in_place(ctx, grad_output)
        if torch.is_grad_enabled():  # create_graph: a gradient of this gradient is asked for
            raise RuntimeError("lsr.torch.cross_entropy: second derivatives are not supported "
                               "(the gradient comes from the C kernel); use F.cross_entropy "
                               "for double backward")
        grad = ctx.grad
        if grad is None:
            raise RuntimeError("lsr.torch.cross_entropy: no gradient was computed in the "
                               "forward (the input did not require grad)")
        up = grad_output.detach().to(torch.float32).numpy()
        # a new array (the saved gradient stays as it is for a second backward), by NumPy:
        # one pass, no PyTorch elementwise kernel; a scale of 1 (the usual mean or sum)
        # is a copy, bfloat16 included
        if ctx.reduction != "none" and float(up) == 1.0:
            out = grad.copy()
        else:
            wide = _bf16_widen(grad) if grad.dtype == np.uint16 else grad
            scale = up.reshape(-1, 1) if ctx.reduction == "none" else np.float32(up)
            out = np.multiply(wide, scale)
        if out.dtype == np.uint16:
            tensor = torch.from_numpy(out.view(np.int16)).view(torch.bfloat16)
        else:
            tensor = _from_f32(out, ctx.dtype)
        return tensor, None, None, None, None, None, None


def _backward_in_place(ctx, grad_output):
    """The gradient in the input's memory, scaled there: handed out as it is, once."""
    if torch.is_grad_enabled():
        raise RuntimeError("lsr.torch.cross_entropy: second derivatives are not supported "
                           "(the gradient comes from the C kernel); use F.cross_entropy "
                           "for double backward")
    grad = ctx.grad
    if grad is None:
        raise RuntimeError("lsr.torch.cross_entropy(inplace=True): backward a second time "
                           "(the gradient was handed out in the input's memory)")
    ctx.grad = None
    up = grad_output.detach().to(torch.float32).numpy()
    if ctx.reduction == "none" or float(up) != 1.0:
        scale = up.reshape(-1, 1) if ctx.reduction == "none" else np.float32(up)
        if grad.dtype == np.uint16:
            wide = np.multiply(_bf16_widen(grad), scale)
            grad[...] = _from_f32(wide, torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        else:
            np.multiply(grad, scale, out=grad)
    if grad.dtype == np.uint16:
        tensor = torch.from_numpy(grad.view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(grad)
    return tensor, None, None, None, None, None, None


def _legacy_reduction(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    from torch.nn import _reduction
    return _reduction.legacy_get_string(size_average, reduce)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0, *, prior=None, convention="all",
                  z_loss=0.0, return_stats=False, inplace=False):
    """Cross-entropy with label smoothing, as torch.nn.functional.cross_entropy.

    input            (N, C), (C,) or (N, C, d1, ..., dk): logits, classes in dimension 1
    target           class indices (N), () or (N, d1, ..., dk), int64; or probabilities
                     of input's shape (floating point)
    weight           (C) class weights, or None
    ignore_index     class-index targets equal to it count in no term (not with
                     probability targets)
    reduction        'mean' (divided by the sum of the counted rows' weights, or by N
                     for probability targets), 'sum' or 'none'
    label_smoothing  eps in [0, 1]: the target becomes (1 - eps) onehot + eps u
    prior            keyword only: (C) smoothing distribution u (e.g. the class
                     frequencies; non-negative, summing to 1); default uniform
    convention       keyword only: 'all' (u = 1/C, PyTorch's: the label gets
                     1 - eps + eps/C) or 'others' (u = 1/(C-1) off the label: it gets
                     1 - eps, darknet's and Megatron's); ignored with a prior
    z_loss           keyword only: lambda >= 0, adds lambda * logsumexp(input)^2 per row
    return_stats     keyword only: also return lsr.Stats: H(q, p) and H(u, p) (the two
                     terms of the smoothed loss), valid rows, top-1 hits, mean max
                     probability, mean log-sum-exp (plain floats, for logging)
    inplace          keyword only: write the gradient over input's own memory instead
                     of a buffer of its size (Liger's trick for large vocabularies:
                     one N x C array less).  input must be a contiguous (N, C)
                     float32 or bfloat16 tensor computed by another operation (not a
                     leaf, not a view, not retaining its grad), used by nothing else:
                     its values are the gradient after the call, and autograd raises
                     if an operation that saved it needs it in backward.  One
                     backward only.  The gradient handed back is that memory: what
                     autograd passes on unchanged (through an addition to a leaf's
                     .grad, say) still shares it.  Non-finite logits raise
                     RuntimeError (the other rows are already overwritten); they are
                     not handed to F.cross_entropy.

    With weights and smoothing the smoothing term is sum_k w_k u_k (-log p_k), as in
    PyTorch.  Mean with every row ignored (or zero weight) is NaN, as in PyTorch.
    Inputs lsr's kernel refuses but PyTorch computes (NaN or infinite logits, e.g. -inf
    masks; negative weights or probability targets) are computed by F.cross_entropy
    itself, without the lsr-only options (return_stats then gives None).  The statistics
    are unweighted means over the counted rows, whatever the weights and reduction.

    Raises what F.cross_entropy raises: IndexError for a class index out of range,
    ValueError or RuntimeError for shapes and dtypes; and TypeError for a tensor not on
    the CPU, RuntimeError for a second derivative (create_graph=True through this loss)
    or probability targets that require grad, which lsr does not differentiate.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    for name, t in (("input", input), ("target", target), ("weight", weight), ("prior", prior)):
        if t is not None and isinstance(t, torch.Tensor) and t.device.type != "cpu":
            raise TypeError(f"lsr.torch.cross_entropy: {name} is on {t.device}; lsr runs on "
                            "the CPU (move it with .cpu(), or use F.cross_entropy there)")
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("cross_entropy(): input and target must be Tensors")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"cross_entropy(): ignore_index must be int, not "
                        f"{type(ignore_index).__name__}")
    if not input.is_floating_point():
        raise RuntimeError(f"cross_entropy: input must be floating point, not {input.dtype}")
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    probabilities = target.is_floating_point()
    if probabilities and target.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("lsr.torch.cross_entropy: probability targets that require grad "
                           "are not supported (lsr differentiates the input only)")
    given_input, given_target = input, target  # for F.cross_entropy, as they came
    unbatched = input.dim() == 1
    if unbatched:
        input = input.unsqueeze(0)
        target = target.unsqueeze(0)
    if input.dim() < 2:
        raise RuntimeError("cross_entropy: input must be (C,), (N, C) or (N, C, d1, ...)")
    n, c = input.shape[0], input.shape[1]
    if weight is not None:
        if weight.dim() != 1 or weight.numel() != c:
            raise RuntimeError(f"weight tensor should be defined either for all {c} classes or "
                               f"no classes but got weight tensor of shape: "
                               f"{list(weight.shape)}")
        if weight.dtype != input.dtype:
            raise RuntimeError(f"expected scalar type {_dtype_name(input)} but found "
                               f"{_dtype_name(weight)}")
    if probabilities:
        if target.shape != input.shape:
            raise RuntimeError(f"cross_entropy: probability target of shape "
                               f"{tuple(target.shape)} for input of shape {tuple(input.shape)}")
        if ignore_index != -100:
            raise RuntimeError("ignore_index is not supported for floating point target")
    else:
        if target.dtype == torch.uint8:
            target = target.long()  # PyTorch takes Byte class indices too
        if target.dtype != torch.int64:
            raise RuntimeError(f"expected scalar type Long but found {_dtype_name(target)}")
        if target.dim() == 0 or target.shape[0] != n:
            raise ValueError(f"Expected input batch_size ({n}) to match target batch_size "
                             f"({target.shape[0] if target.dim() else 0}).")
        if tuple(target.shape) != (n,) + tuple(input.shape[2:]):
            raise RuntimeError(f"cross_entropy: target of shape {tuple(target.shape)} for "
                               f"input of shape {tuple(input.shape)}")
    # classes last, one row per (sample, position): differentiable, so autograd
    # brings the gradient back to input's layout and dtype
    z = input.movedim(1, -1).reshape(-1, c) if input.dim() > 2 else input
    if probabilities:
        t = target.movedim(1, -1).reshape(-1, c) if target.dim() > 2 else target
        t = t.detach().to(torch.float32)
    else:
        t = target.reshape(-1)
        bad = (t != ignore_index) & ((t < 0) | (t >= c))
        if bool(bad.any()):
            raise IndexError(f"Target {int(t[bad][0])} is out of bounds.")
    w = None if weight is None else weight.detach().to(torch.float32).contiguous().numpy()
    u = None
    if prior is not None:
        u = torch.as_tensor(prior).detach().to(torch.float64)
        u = (u / u.sum()).to(torch.float32).numpy()  # rounded by a module's dtype: renormalised
    kwargs = dict(label_smoothing=max(float(label_smoothing), 0.0), convention=convention,
                  prior=u, weight=w, ignore_index=ignore_index if not probabilities else -100,
                  reduction=reduction, z_loss=float(z_loss), threads=torch.get_num_threads())
    nan_rows = None
    if reduction == "mean" and not probabilities:
        counted = t != ignore_index
        total = counted.sum() if weight is None else weight[t[counted]].sum()
        if float(total) == 0.0:  # PyTorch: NaN loss; NaN gradient on counted rows
            nan_rows = counted
    if reduction == "mean" and probabilities and t.shape[0] == 0:
        nan_rows = torch.zeros(0, dtype=torch.bool)
    stats = []
    want_grad = input.requires_grad and torch.is_grad_enabled()
    if inplace:
        _check_in_place(input, want_grad)
    try:
        loss = _Loss.apply(z, t, kwargs, nan_rows, stats, want_grad, bool(inplace))
        if inplace:
            loss = loss[0]
    except Error as e:
        plain = prior is None and convention == "all" and float(z_loss) == 0.0
        if inplace and e.status == "LSR_ERROR_NONFINITE":
            # the other rows already hold their gradient: nothing left to hand to PyTorch;
            # autograd is told that input changed (an operation that saved it then raises)
            with torch.no_grad():
                input.mul_(1)
            raise RuntimeError(f"cross_entropy(inplace=True): {e}; the other rows of input "
                               "now hold their gradient") from None
        if plain and e.status in _PYTORCH_COMPUTES:
            # non-finite logits (e.g. -inf masks), negative weights or targets: what
            # PyTorch computes for them, by PyTorch
            loss = F.cross_entropy(given_input, given_target, weight=weight,
                                   ignore_index=ignore_index, reduction=reduction,
                                   label_smoothing=label_smoothing)
            return (loss, None) if return_stats else loss
        raise RuntimeError(f"cross_entropy: {e} ({e.status})") from None
    if reduction == "none":
        loss = loss.reshape(() if unbatched else (n,) + tuple(input.shape[2:]))
    loss = loss.to(input.dtype)
    if return_stats:
        return loss, stats[0]
    return loss


def _check_in_place(input, want_grad):
    if not want_grad:
        raise RuntimeError("lsr.torch.cross_entropy(inplace=True): input does not require "
                           "grad here, so there is no gradient to write over it")
    if input.dim() != 2 or not input.is_contiguous():
        raise RuntimeError(f"lsr.torch.cross_entropy(inplace=True): input must be a "
                           f"contiguous (N, C) tensor, not of shape {tuple(input.shape)}"
                           f"{'' if input.is_contiguous() else ' (non-contiguous)'}")
    if input.dtype not in (torch.float32, torch.bfloat16):
        raise RuntimeError(f"lsr.torch.cross_entropy(inplace=True): input must be float32 "
                           f"or bfloat16, not {input.dtype}")
    if input.grad_fn is None:
        raise RuntimeError("lsr.torch.cross_entropy(inplace=True): input is a leaf that "
                           "requires grad; only the output of another operation can be "
                           "overwritten by its gradient")
    if input._is_view():
        # autograd cannot take an in-place change of a view from a Function returning two
        # tensors, and would say so only after the kernel had written over the memory
        raise RuntimeError("lsr.torch.cross_entropy(inplace=True): input is a view of "
                           "another tensor (e.g. .view() or slicing); pass the tensor itself "
                           "or make it one with .contiguous().clone(), or leave inplace off")
    if input.retains_grad:
        raise RuntimeError("lsr.torch.cross_entropy(inplace=True): input retains its grad "
                           "(retain_grad()); its memory will hold the gradient already")


def _dtype_name(t):
    return {torch.int32: "Int", torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
            torch.bool: "Bool", torch.int64: "Long", torch.float32: "Float",
            torch.float64: "Double", torch.float16: "Half",
            torch.bfloat16: "BFloat16"}.get(t.dtype, str(t.dtype))


class CrossEntropyLoss(_WeightedLoss):
    """nn.CrossEntropyLoss with lsr's kernel: the same constructor, plus the
    keyword-only prior, convention, z_loss and inplace of lsr.torch.cross_entropy."""

    __constants__ = ["ignore_index", "reduction", "label_smoothing"]

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, prior=None, convention="all",
                 z_loss=0.0, inplace=False):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        # a plain attribute, not a buffer: module.to(bfloat16) must not round it
        self.prior = None if prior is None else torch.as_tensor(prior, dtype=torch.float32)
        self.convention = convention
        self.z_loss = z_loss
        self.inplace = inplace

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             prior=self.prior, convention=self.convention, z_loss=self.z_loss,
                             inplace=self.inplace)


def _linear_call(hn, wn, bn, t, kwargs, want, row_scale=None):
    """lsr_linear_cross_entropy on float32 arrays, or on bfloat16 bits (uint16) for both hn
    and wn: (loss array, Stats, dh, dw, db), the gradients float32."""
    import ctypes
    from . import _lib, _options, _ptr
    n, d = hn.shape
    k = wn.shape[0]
    dh = np.empty(hn.shape, dtype=np.float32) if want[0] else None
    dw = np.empty(wn.shape, dtype=np.float32) if want[1] else None
    db = np.empty(k, dtype=np.float32) if want[2] else None
    opt = _options(kwargs["label_smoothing"], kwargs["convention"], kwargs["ignore_index"],
                   kwargs["reduction"], kwargs["z_loss"], kwargs["threads"])
    if hn.dtype == np.uint16:
        opt.logits_dtype = _lib.BFLOAT16  # the dtype of H and W here
    opt.prior = _ptr(kwargs["prior"], ctypes.c_float)
    opt.class_weights = _ptr(kwargs["weight"], ctypes.c_float)
    loss = np.zeros(n if kwargs["reduction"] == "none" else 1, dtype=np.float32)
    stats = _lib.LossStats()
    status = _lib.lib.lsr_linear_cross_entropy(
        *(_ptr(a, ctypes.c_float) for a in (loss, dh, dw, db)), ctypes.byref(stats),
        _ptr(hn, ctypes.c_void_p), d, _ptr(wn, ctypes.c_void_p), _ptr(bn, ctypes.c_float),
        _ptr(t, ctypes.c_int64), n, d, k, _ptr(row_scale, ctypes.c_float),
        ctypes.byref(opt))
    if status != 0:
        raise Error(_lib.status_name(status), _lib.lib.lsr_last_error().decode(errors="replace"))
    return loss, Stats(stats.label_ce, stats.prior_ce, stats.valid_rows, stats.top1_hits,
                       stats.mean_max_prob, stats.mean_lse), dh, dw, db


_BF16_PRODUCTS = []


def _bf16_products():
    """Whether this liblsr and CPU have bf16 products (asked once, by a 1 x 1 x 1 call)."""
    if not _BF16_PRODUCTS:
        one = torch.ones(1, 1, dtype=torch.bfloat16)
        try:
            _linear_call(_bf16_bits(one), _bf16_bits(one), None, np.zeros(1, dtype=np.int64),
                         dict(label_smoothing=0.0, convention="all", prior=None, weight=None,
                              ignore_index=-100, reduction="sum", z_loss=0.0, threads=1),
                         (False, False, False))
            _BF16_PRODUCTS.append(True)
        except Error:
            _BF16_PRODUCTS.append(False)
    return _BF16_PRODUCTS[0]


class _LinearLoss(torch.autograd.Function):
    """Forward: lsr_linear_cross_entropy's loss with the gradients of input, weight and
    bias; backward: those times grad_output (a scalar: mean or sum).  Reduction 'none':
    forward computes the losses only, backward calls the C library again with
    grad_output as the rows' scales (the gradients depend on it row by row)."""

    @staticmethod
    def forward(ctx, h, w, b, target, kwargs, stats_out, want, nan_rows):
        # bfloat16 input and weight go to the C library as they are (its bf16 products,
        # on CPUs with AVX512_BF16); anything else as float32
        if h.dtype == w.dtype == torch.bfloat16 and _bf16_products():
            hn, wn = _bf16_bits(h), _bf16_bits(w)
        else:
            hn, wn = _to_f32(h), _to_f32(w)
        bn = None if b is None else _to_f32(b)
        t = np.ascontiguousarray(target.detach().numpy(), dtype=np.int64)
        ctx.dtypes = (h.dtype, w.dtype, None if b is None else b.dtype)
        ctx.recompute = None
        if kwargs["reduction"] == "none":
            loss, stats, _, _, _ = _linear_call(hn, wn, bn, t, kwargs, (False, False, False))
            stats_out.append(stats)
            ctx.recompute = (hn, wn, bn, t, kwargs, want)
            return torch.from_numpy(loss)
        loss, stats, dh, dw, db = _linear_call(hn, wn, bn, t, kwargs, want)
        stats_out.append(stats)
        if nan_rows is not None:  # a mean over no weight: PyTorch's 0/0 on the counted rows
            loss[:] = np.nan
            if nan_rows.any():
                if dh is not None:
                    dh[nan_rows.numpy()] = np.nan
                for g in (dw, db):
                    if g is not None:
                        g[...] = np.nan
        ctx.grads = (dh, dw, db)
        return torch.from_numpy(loss).reshape(())

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError("lsr.torch.linear_cross_entropy: second derivatives are not "
                               "supported (the gradients come from the C kernel)")
        if ctx.recompute is not None:
            hn, wn, bn, t, kwargs, want = ctx.recompute
            up = np.ascontiguousarray(grad_output.detach().to(torch.float32).numpy().reshape(-1))
            _, _, dh, dw, db = _linear_call(hn, wn, bn, t, kwargs, want, row_scale=up)
            grads = (dh, dw, db)
        else:
            up = np.float32(grad_output.detach().to(torch.float32).item())
            grads = tuple(None if g is None else np.multiply(g, up) for g in ctx.grads)
        out = [None if g is None else _from_f32(g, dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return out[0], out[1], out[2], None, None, None, None, None


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=-100, label_smoothing=0.0, prior=None,
                         convention="all", z_loss=0.0, return_stats=False):
    """cross_entropy(F.linear(input, linear_weight, linear_bias), target, ...) in one fused
    call of lsr's C library, without the (N, C) logits.

    input            (..., D) hidden states; every leading dimension is a row
    linear_weight    (C, D) the classifier's weight; linear_bias (C) or None
    target           (...) class indices (int64), input's leading shape
    weight, reduction, ignore_index, label_smoothing, prior, convention, z_loss,
    return_stats     as in lsr.torch.cross_entropy.  With reduction 'none' the forward
                     computes the losses only and the backward runs the fused call
                     again with grad_output as the rows' weights (the gradients
                     depend on it row by row): one more logit product, still no
                     (N, C) logits

    The logits exist 256 rows at a time (128 for C = 128256) inside the C call, which
    computes the loss and the gradients of input, weight and bias together; backward
    scales them.  float32 is computed as it is.  bfloat16 input and linear_weight go
    to the C call as they are where it has bf16 products (oneDNN, a CPU with
    AVX512_BF16): bf16 products with float32 sums, the logits and their gradient in
    float32, that gradient rounded to bf16 for the gradient products; elsewhere they are
    converted to float32.  float16, float64 and mixed dtypes are converted to float32.
    Gradients come back in each tensor's own dtype.  CPU tensors only.  Non-finite
    logits (or negative class weights) are computed by PyTorch's composite, without
    the lsr-only options (return_stats then gives None).  A mean over no weight is NaN,
    its gradient NaN from the counted rows and 0 from the others, as in PyTorch.
    """
    for name, t in (("input", input), ("linear_weight", linear_weight), ("target", target),
                    ("linear_bias", linear_bias), ("weight", weight), ("prior", prior)):
        if isinstance(t, torch.Tensor) and t.device.type != "cpu":
            raise TypeError(f"lsr.torch.linear_cross_entropy: {name} is on {t.device}; lsr "
                            "runs on the CPU")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if label_smoothing > 1.0 or label_smoothing < 0.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.dim() < 1 or linear_weight.dim() != 2 or input.shape[-1] != linear_weight.shape[1]:
        raise RuntimeError(f"linear_cross_entropy: input of shape {tuple(input.shape)} and "
                           f"linear_weight of shape {tuple(linear_weight.shape)} do not match "
                           "(input (..., D), linear_weight (C, D))")
    c, d = linear_weight.shape
    if linear_bias is not None and tuple(linear_bias.shape) != (c,):
        raise RuntimeError(f"linear_cross_entropy: linear_bias of shape "
                           f"{tuple(linear_bias.shape)}, expected ({c},)")
    if target.dtype != torch.int64 or tuple(target.shape) != tuple(input.shape[:-1]):
        raise RuntimeError(f"linear_cross_entropy: target must be int64 of shape "
                           f"{tuple(input.shape[:-1])}, not {target.dtype} {tuple(target.shape)}")
    h = input.reshape(-1, d)
    t = target.reshape(-1)
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bool(bad.any()):
        raise IndexError(f"Target {int(t[bad][0])} is out of bounds.")
    for name, v in (("weight", weight), ("prior", prior)):
        if v is not None and tuple(torch.as_tensor(v).shape) != (c,):
            raise RuntimeError(f"linear_cross_entropy: {name} of shape "
                               f"{tuple(torch.as_tensor(v).shape)}, expected ({c},)")
    w = None if weight is None else weight.detach().to(torch.float32).contiguous().numpy()
    u = None
    if prior is not None:
        u = torch.as_tensor(prior).detach().to(torch.float64)
        u = (u / u.sum()).to(torch.float32).numpy()
    kwargs = dict(label_smoothing=float(label_smoothing), convention=convention, prior=u,
                  weight=w, ignore_index=ignore_index, reduction=reduction,
                  z_loss=float(z_loss), threads=torch.get_num_threads())
    grad = torch.is_grad_enabled()
    want = (grad and input.requires_grad, grad and linear_weight.requires_grad,
            grad and linear_bias is not None and linear_bias.requires_grad)
    nan_rows = None
    if reduction == "mean":
        counted = t != ignore_index
        total = counted.sum() if weight is None else weight[t[counted]].sum()
        if float(total) == 0.0:  # PyTorch: NaN loss; NaN gradient from the counted rows
            nan_rows = counted
    stats = []
    try:
        loss = _LinearLoss.apply(h, linear_weight, linear_bias, t, kwargs, stats, want, nan_rows)
    except Error as e:
        plain = prior is None and convention == "all" and float(z_loss) == 0.0
        if plain and e.status in _PYTORCH_COMPUTES:
            # non-finite logits (or negative weights): what PyTorch computes, by PyTorch, in
            # float32 as the kernel would have (mixed dtypes are accepted above)
            bias32 = None if linear_bias is None else linear_bias.float()
            logits = F.linear(input.float(), linear_weight.float(), bias32)
            loss = F.cross_entropy(logits.reshape(-1, c), target.reshape(-1),
                                   weight=None if weight is None else weight.float(),
                                   ignore_index=ignore_index, reduction=reduction,
                                   label_smoothing=label_smoothing).to(input.dtype)
            return (loss, None) if return_stats else loss
        raise RuntimeError(f"linear_cross_entropy: {e} ({e.status})") from None
    if reduction == "none":
        loss = loss.reshape(target.shape)
    loss = loss.to(input.dtype)
    return (loss, stats[0]) if return_stats else loss


class LinearCrossEntropyLoss(torch.nn.Module):
    """A classifier head (Linear(in_features, num_classes)) and its label-smoothed loss in
    one module: forward(input, target) = linear_cross_entropy(input, self.weight, target,
    linear_bias=self.bias, ...), the logits never formed in full."""

    def __init__(self, in_features, num_classes, bias=True, *, weight=None, reduction="mean",
                 ignore_index=-100, label_smoothing=0.0, prior=None, convention="all",
                 z_loss=0.0):
        super().__init__()
        head = torch.nn.Linear(in_features, num_classes, bias=bias)
        self.weight, self.bias = head.weight, head.bias
        self.class_weight = weight
        self.reduction, self.ignore_index = reduction, ignore_index
        self.label_smoothing, self.convention, self.z_loss = label_smoothing, convention, z_loss
        self.prior = None if prior is None else torch.as_tensor(prior, dtype=torch.float32)

    def forward(self, input, target):
        return linear_cross_entropy(input, self.weight, target, linear_bias=self.bias,
                                    weight=self.class_weight, reduction=self.reduction,
                                    ignore_index=self.ignore_index,
                                    label_smoothing=self.label_smoothing, prior=self.prior,
                                    convention=self.convention, z_loss=self.z_loss)

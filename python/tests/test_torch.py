"""lsr.torch.cross_entropy against torch.nn.functional.cross_entropy (PyTorch 1.13).

PyTorch computes in float64 on the same float32-rounded inputs; lsr in float32.
Tolerances: 1e-5 relative on losses and 1e-5 relative + 1e-7 absolute on
gradients (float32 sums over at most a few hundred classes stay within
K * 6e-8 of the exact value)."""
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import lsr  # noqa: E402
import lsr.torch as lt  # noqa: E402

GEN = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=GEN) * 3


def both(input32, target, **kw):
    """(lsr's loss and gradient in float32, PyTorch's in float64), one backward each with a
    random upstream gradient for reduction 'none'."""
    x = input32.clone().requires_grad_(True)
    ours = lt.cross_entropy(x, target, **kw)
    up = torch.rand(ours.shape, generator=GEN) if ours.dim() else torch.tensor(1.0)
    (ours * up).sum().backward()
    x64 = input32.double().requires_grad_(True)
    t64 = target.double() if target.is_floating_point() else target
    kw64 = dict(kw)
    if kw64.get("weight") is not None:
        kw64["weight"] = kw64["weight"].double()
    theirs = F.cross_entropy(x64, t64, **kw64)
    (theirs * up.double()).sum().backward()
    return ours.detach(), x.grad, theirs.detach(), x64.grad


def close(ours, theirs):
    torch.testing.assert_close(ours.double(), theirs, rtol=1e-5, atol=1e-7, equal_nan=True)


SHAPES = [(7, 5), (5,), (3, 4, 6), (2, 6, 3, 2), (1, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_indices(shape, reduction, eps, weighted):
    """Every input form with class-index targets, ignore_index, weights, smoothing."""
    c = shape[1] if len(shape) > 1 else shape[0]
    x = rand(*shape)
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    y = torch.randint(0, c, tshape, generator=GEN)
    if y.dim():
        y.view(-1)[0] = -100  # one ignored row
    w = torch.rand(c, generator=GEN) + 0.1 if weighted else None
    o, og, t, tg = both(x, y, weight=w, reduction=reduction, label_smoothing=eps)
    close(o, t)
    close(og, tg)


@pytest.mark.parametrize("shape", [(7, 5), (5,), (3, 4, 6)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_probability_targets(shape, reduction, eps):
    """Probability targets (rows not summing to 1 too), smoothed as t (1 - eps) + eps / C."""
    x = rand(*shape)
    t = torch.rand(*shape, generator=GEN)
    w = torch.rand(shape[1] if len(shape) > 1 else shape[0], generator=GEN) + 0.1
    o, og, r, rg = both(x, t, weight=w, reduction=reduction, label_smoothing=eps)
    close(o, r)
    close(og, rg)


def test_prior_and_others_are_dense_targets():
    """prior=u and convention='others' equal F.cross_entropy against the dense smoothed
    target (1 - eps) onehot + eps u, which PyTorch can only express that way."""
    n, c, eps = 9, 6, 0.15
    x, y = rand(n, c), torch.randint(0, c, (n,), generator=GEN)
    u = torch.rand(c, generator=GEN)
    u /= u.sum()
    onehot = F.one_hot(y, c).float()
    dense = (1 - eps) * onehot + eps * u
    xo = x.clone().requires_grad_(True)
    lt.cross_entropy(xo, y, label_smoothing=eps, prior=u).backward()
    xr = x.double().requires_grad_(True)
    ref = F.cross_entropy(xr, dense.double())
    ref.backward()
    close(lt.cross_entropy(x, y, label_smoothing=eps, prior=u), ref.detach())
    close(xo.grad, xr.grad)
    others = (1 - eps) * onehot + eps * (1 - onehot) / (c - 1)
    close(lt.cross_entropy(x, y, label_smoothing=eps, convention="others"),
          F.cross_entropy(x.double(), others.double()))


def test_every_row_ignored_or_weightless_is_nan():
    """Mean over no weight: NaN loss as in PyTorch; the gradient as PyTorch's (0 when every
    row is ignored, NaN on counted rows of zero weight)."""
    x = rand(3, 4)
    o, og, t, tg = both(x, torch.tensor([-100, -100, -100]), label_smoothing=0.1)
    close(o, t)
    close(og, tg)
    o, og, t, tg = both(x, torch.tensor([0, -100, 2]), weight=torch.tensor([0.0, 1, 0, 1]))
    close(o, t)
    close(og, tg)


def test_legacy_size_average_and_reduce():
    """size_average/reduce map to a reduction as in PyTorch."""
    x, y = rand(6, 4), torch.randint(0, 4, (6,), generator=GEN)
    for size_average, reduce in [(False, None), (None, False), (True, True)]:
        close(lt.cross_entropy(x, y, size_average=size_average, reduce=reduce),
              F.cross_entropy(x.double(), y, size_average=size_average, reduce=reduce))


def test_low_precision_inputs():
    """bfloat16, float16 and float64 inputs are computed in float32 on the same values and
    give loss and gradient in the input's dtype: PyTorch's on those values, rounded once to
    that dtype (rtol: its epsilon, 2^-7 for bfloat16, 2^-10 for float16)."""
    x32, y = rand(8, 10), torch.randint(0, 10, (8,), generator=GEN)
    for dtype, rtol in ((torch.bfloat16, 2**-7), (torch.float16, 2**-10), (torch.float64, 1e-5)):
        x = x32.to(dtype).requires_grad_(True)
        loss = lt.cross_entropy(x, y, label_smoothing=0.1)
        loss.backward()
        assert loss.dtype == dtype and x.grad.dtype == dtype
        same = x.detach().double().requires_grad_(True)
        ref = F.cross_entropy(same, y, label_smoothing=0.1)
        ref.backward()
        torch.testing.assert_close(loss.double(), ref.detach(), rtol=rtol, atol=0)
        torch.testing.assert_close(x.grad.double(), same.grad, rtol=rtol, atol=1e-3 * rtol)


@pytest.mark.parametrize("shape,kw", [
    ((8, 10), dict(label_smoothing=0.1)),
    ((4, 32000), dict(label_smoothing=0.2, convention="others")),
    ((3, 7, 5), dict(label_smoothing=0.1, reduction="sum", ignore_index=2)),
    ((6, 33), dict(label_smoothing=0.1, weight=True, prior=True, z_loss=1e-3)),
    ((6, 33), dict(label_smoothing=0.3, probabilities=True)),
])
def test_bfloat16_in_the_kernel(shape, kw):
    """bfloat16 logits go to the kernel as they are: on the same values, the loss is the
    float32 input's loss rounded to bfloat16 and the gradient (for mean and sum) the float32
    gradient rounded to nearest even, bit for bit: the kernel computes in float32 either way.
    Non-contiguous inputs too."""
    kw = dict(kw)
    k = shape[1]
    x32 = rand(*shape).to(torch.bfloat16).float()
    if kw.pop("probabilities", False):
        y = torch.rand(shape, generator=GEN)
    else:
        y = torch.randint(0, k, (shape[0],) + shape[2:], generator=GEN)
    if kw.get("weight"):
        kw["weight"] = torch.rand(k, generator=GEN) + 0.5
    if kw.get("prior"):
        kw["prior"] = torch.rand(k, generator=GEN) + 0.1
    for layout in ("contiguous", "transposed"):
        base = x32 if layout == "contiguous" else x32.transpose(0, -1).contiguous().transpose(0, -1)
        a = base.clone().requires_grad_(True)
        b = base.to(torch.bfloat16).requires_grad_(True)
        w = kw.get("weight")
        kb = dict(kw, weight=None if w is None else w.to(torch.bfloat16).float())
        ka = dict(kb)
        kb["weight"] = None if w is None else kb["weight"].to(torch.bfloat16)
        la = lt.cross_entropy(a, y, **ka)
        lb = lt.cross_entropy(b, y, **kb)
        la.backward()
        lb.backward()
        assert lb.dtype == torch.bfloat16 and b.grad.dtype == torch.bfloat16
        assert torch.equal(lb, la.detach().to(torch.bfloat16)), layout
        assert torch.equal(b.grad, a.grad.to(torch.bfloat16)), layout


def test_bfloat16_reduction_none_scales_in_float32():
    """Reduction 'none': the bfloat16 gradient times an upstream gradient, rounded once more:
    within 2 bfloat16 roundings (2^-8 relative each) of float32's."""
    x32 = rand(9, 50).to(torch.bfloat16).float()
    y = torch.randint(0, 50, (9,), generator=GEN)
    up = torch.rand(9, generator=GEN)
    a = x32.clone().requires_grad_(True)
    b = x32.to(torch.bfloat16).requires_grad_(True)
    (lt.cross_entropy(a, y, reduction="none", label_smoothing=0.1) * up).sum().backward()
    (lt.cross_entropy(b, y, reduction="none", label_smoothing=0.1).float() * up).sum().backward()
    torch.testing.assert_close(b.grad.float(), a.grad, rtol=2 * 2**-8, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_inplace_gradient_over_the_logits(dtype, reduction):
    """inplace=True: the same loss and parameter gradients as without, the logits' memory
    holding the input gradient (no buffer of their size), one backward only."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300).to(dtype)
    h = torch.randn(24, 16, generator=GEN).to(dtype)
    y = torch.randint(0, 300, (24,), generator=GEN)
    up = torch.rand(24, generator=GEN).to(dtype)
    grads = []
    for inplace in (False, True):
        head.zero_grad()
        logits = head(h)
        loss = lt.cross_entropy(logits, y, label_smoothing=0.1, reduction=reduction,
                                inplace=inplace)
        (loss * up if reduction == "none" else loss).sum().backward()
        grads.append((loss.detach(), head.weight.grad.clone(), head.bias.grad.clone()))
        if inplace:  # the logits now hold the kernel's gradient (scaled in place)
            assert logits._version > 0
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_inplace_refusals():
    """What inplace=True cannot do, it says: a leaf, a non-contiguous or N-d input, a
    second backward, an input another operation saved for its backward."""
    x = rand(4, 5).requires_grad_(True)
    y = torch.randint(0, 5, (4,), generator=GEN)
    with pytest.raises(RuntimeError, match="leaf"):
        lt.cross_entropy(x, y, inplace=True)
    with pytest.raises(RuntimeError, match="contiguous"):
        lt.cross_entropy((x * 1).t(), torch.randint(0, 4, (5,), generator=GEN), inplace=True)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        lt.cross_entropy(x.double() * 1, y, inplace=True)
    z = x * 2
    loss = lt.cross_entropy(z, y, inplace=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    z = x.exp()  # exp saves its output for backward
    loss = lt.cross_entropy(z, y, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    z = x * 2  # the overwritten input used again
    loss = lt.cross_entropy(z, y, inplace=True) + z.sum()
    with pytest.raises(RuntimeError, match="overwritten by its gradient"):
        loss.backward()
    base = x * 2
    with pytest.raises(RuntimeError, match="view"):  # refused before anything is written
        lt.cross_entropy(base.view(4, 5), y, inplace=True)
    assert torch.equal(base, x * 2)
    r = x * 2
    r.retain_grad()
    with pytest.raises(RuntimeError, match="retains its grad"):
        lt.cross_entropy(r, y, inplace=True)
    z = x * 2
    with torch.no_grad():
        z[1, 1] = float("inf")
    version = z._version
    with pytest.raises(RuntimeError, match="now hold their gradient"):
        lt.cross_entropy(z, y, inplace=True)
    assert z._version > version  # autograd told that z changed


def test_non_contiguous_input_and_module():
    """A transposed input, and nn.CrossEntropyLoss's constructor."""
    base, y = rand(5, 8), torch.randint(0, 5, (8,), generator=GEN)
    w = torch.rand(5, generator=GEN) + 0.5
    x = base.t().requires_grad_(True)  # a leaf whose rows are not contiguous
    ours = lt.CrossEntropyLoss(weight=w, label_smoothing=0.1, ignore_index=1)(x, y)
    ours.backward()
    x64 = base.double().t().requires_grad_(True)
    theirs = torch.nn.CrossEntropyLoss(weight=w.double(), label_smoothing=0.1,
                                       ignore_index=1)(x64, y)
    theirs.backward()
    close(ours.detach(), theirs.detach())
    close(x.grad, x64.grad)
    # a prior survives the module being cast to bfloat16
    u = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
    crit = lt.CrossEntropyLoss(label_smoothing=0.1, prior=u).to(torch.bfloat16)
    crit(base.t().to(torch.bfloat16), y)


def test_errors_as_pytorch_raises_them():
    """The exception types F.cross_entropy raises, and lsr's own for devices and double
    backward."""
    x = rand(3, 4)
    with pytest.raises(IndexError, match="out of bounds"):
        lt.cross_entropy(x, torch.tensor([0, 1, 7]))
    with pytest.raises(IndexError, match="out of bounds"):
        lt.cross_entropy(x, torch.tensor([0, 1, -5]))
    with pytest.raises(RuntimeError, match="Long"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="batch_size"):
        lt.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="ignore_index"):
        lt.cross_entropy(x, torch.rand(3, 4), ignore_index=3)
    with pytest.raises(TypeError, match="meta"):
        lt.cross_entropy(torch.empty(3, 4, device="meta"), torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="label_smoothing"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2]), label_smoothing=2.0)
    with pytest.raises(RuntimeError, match="weight tensor should be defined"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2]), weight=torch.ones(3))
    with pytest.raises(RuntimeError, match="expected scalar type Float but found Double"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2]), weight=torch.ones(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="ignore_index"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2]), ignore_index=1.5)
    with pytest.raises(RuntimeError, match="require grad"):
        lt.cross_entropy(x, torch.rand(3, 4, requires_grad=True))
    # a second derivative is refused, not silently wrong (the Hessian would lose the loss's
    # curvature)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.functional.hessian(
            lambda z: lt.cross_entropy(z, torch.tensor([0, 1, 2])), x.clone())
    xg = x.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(lt.cross_entropy(xg, torch.tensor([0, 1, 2])), xg, create_graph=True)


def test_what_pytorch_computes_and_lsr_refuses():
    """-inf masks, NaN logits, negative weights: computed as PyTorch computes them (by
    PyTorch), so a drop-in never raises where F.cross_entropy does not; uint8 targets."""
    x = torch.tensor([[-float("inf"), 0.0, 1.0], [0.5, 0.2, -1.0]])
    y = torch.tensor([2, 0])
    for kw in ({}, {"label_smoothing": 0.0}, {"weight": torch.tensor([1.0, -1.0, 2.0])}):
        o, og, t, tg = both(x, y, **kw)
        close(o, t)
        close(og, tg)
    xn = torch.tensor([[float("nan"), 0.0, 1.0], [0.5, 0.2, -1.0]])
    o, og, t, tg = both(xn, y)
    close(o, t)
    close(og, tg)
    close(lt.cross_entropy(x.abs(), y.to(torch.uint8)), F.cross_entropy(x.abs().double(), y))


def test_thread_count_does_not_change_the_result():
    """torch.set_num_threads is passed to the kernel; 1 and 2 threads give the same bits."""
    x, y = rand(64, 1000), torch.randint(0, 1000, (64,), generator=GEN)
    before = torch.get_num_threads()
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        xg = x.clone().requires_grad_(True)
        loss = lt.cross_entropy(xg, y, label_smoothing=0.1)
        loss.backward()
        out.append((loss.detach(), xg.grad))
    torch.set_num_threads(before)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_statistics():
    """return_stats: H(q, p) and H(u, p) combine into the loss: (1 - eps) H(q,p) + eps H(u,p)."""
    x, y = rand(16, 7), torch.randint(0, 7, (16,), generator=GEN)
    loss, s = lt.cross_entropy(x, y, label_smoothing=0.2, return_stats=True)
    assert s.valid_rows == 16
    assert abs(float(loss) - (0.8 * s.label_ce + 0.2 * s.prior_ce)) < 1e-5 * float(loss)


def test_training_matches_pytorch():
    """50 SGD steps of a small MLP: lsr's CrossEntropyLoss gives nn.CrossEntropyLoss's losses
    to 1e-5 (both in float32 from the same initial weights)."""
    data, labels = rand(256, 20), torch.randint(0, 10, (256,), generator=GEN)
    losses = []
    for criterion in (lt.CrossEntropyLoss(label_smoothing=0.1),
                      torch.nn.CrossEntropyLoss(label_smoothing=0.1)):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        run = []
        for step in range(50):
            batch = slice(step % 8 * 32, step % 8 * 32 + 32)
            opt.zero_grad()
            loss = criterion(net(data[batch]), labels[batch])
            loss.backward()
            opt.step()
            run.append(float(loss))
        losses.append(torch.tensor(run))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=0)


@pytest.mark.parametrize("case", range(8))
def test_linear_cross_entropy_matches_the_composite(case):
    """lsr.torch.linear_cross_entropy against F.cross_entropy(F.linear(...)) in float64 on
    the same float32 values: loss and the gradients of input, weight and bias, every
    PyTorch option; prior and 'others' against lsr's own composite.  Tolerance: 1e-5
    relative, and absolutely 4 (inner + D + 2) u M for each gradient, M its largest sum of
    absolute products (the float32 products' bound, inner the summed length: C for
    input, N for weight and bias, with the logits' own (D + 2) u carried through the
    softmax)."""
    n, d, c = (5, 3, 7) if case % 2 else (70, 40, 300)
    shape = (n,) if case < 6 else (2, n)
    x32, w32, b32 = rand(*shape, d) / 3, rand(c, d) / 3, rand(c)
    y = torch.randint(0, c, shape, generator=GEN)
    if case in (2, 3):
        y.view(-1)[::3] = -100
    kw = dict(label_smoothing=(0.0, 0.1, 0.2, 1.0)[case % 4],
              reduction="sum" if case in (1, 4) else "mean")
    if case in (3, 5):
        kw["weight"] = torch.rand(c, generator=GEN) + 0.5
    xs = [x32.clone().requires_grad_(True), x32.double().requires_grad_(True)]
    ws = [w32.clone().requires_grad_(True), w32.double().requires_grad_(True)]
    bs = [b32.clone().requires_grad_(True), b32.double().requires_grad_(True)]
    ours = lt.linear_cross_entropy(xs[0], ws[0], y, linear_bias=bs[0], **kw)
    kw64 = dict(kw)
    if "weight" in kw64:
        kw64["weight"] = kw64["weight"].double()
    logits = F.linear(xs[1], ws[1], bs[1])
    logits.retain_grad()
    theirs = F.cross_entropy(logits.reshape(-1, c), y.reshape(-1), **kw64)
    ours.backward()
    theirs.backward()
    u = 2.0**-24
    g = logits.grad.reshape(-1, c).abs()
    rows = g.shape[0]
    bounds = {"input": 4 * (c + d + 2) * u * float((g @ ws[1].detach().abs()).max()),
              "weight": 4 * (rows + d + 2) * u
              * float((g.t() @ xs[1].detach().reshape(-1, d).abs()).max()),
              "bias": 4 * (rows + d + 2) * u * float(g.sum(0).max())}
    torch.testing.assert_close(ours.double(), theirs.detach(), rtol=1e-5, atol=1e-6)
    for a, name in ((xs, "input"), (ws, "weight"), (bs, "bias")):
        torch.testing.assert_close(a[0].grad.double(), a[1].grad, rtol=1e-5, atol=bounds[name],
                                   msg=name)
    tol = dict(rtol=1e-5, atol=max(bounds.values()))
    # the lsr-only options, against lsr's own composite
    extra = dict(prior=torch.rand(c, generator=GEN) + 0.1, convention="others", z_loss=1e-3)
    x = x32.clone().requires_grad_(True)
    w = w32.clone().requires_grad_(True)
    fused = lt.linear_cross_entropy(x, w, y, label_smoothing=0.1, **extra)
    fused.backward()
    x2 = x32.clone().requires_grad_(True)
    w2 = w32.clone().requires_grad_(True)
    comp = lt.cross_entropy(F.linear(x2, w2).reshape(-1, c), y.reshape(-1), label_smoothing=0.1,
                            **extra)
    comp.backward()
    torch.testing.assert_close(fused, comp.detach(), **tol)
    torch.testing.assert_close(x.grad, x2.grad, **tol)
    torch.testing.assert_close(w.grad, w2.grad, **tol)


def test_linear_cross_entropy_module_and_refusals():
    """The module trains like Linear + CrossEntropyLoss; bad calls raise what they should."""
    torch.manual_seed(0)
    fused = lt.LinearCrossEntropyLoss(6, 9, label_smoothing=0.1)
    plain = torch.nn.Linear(6, 9)
    plain.load_state_dict({"weight": fused.weight.detach().clone(),
                           "bias": fused.bias.detach().clone()})
    opt_a = torch.optim.SGD(fused.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(plain.parameters(), lr=0.5)
    x, y = rand(16, 6), torch.randint(0, 9, (16,), generator=GEN)
    for _ in range(20):
        for opt, loss in ((opt_a, fused(x, y)),
                          (opt_b, F.cross_entropy(plain(x), y, label_smoothing=0.1))):
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(fused.weight, plain.weight, rtol=1e-4, atol=1e-5)
    w = rand(9, 6)
    with pytest.raises(IndexError, match="out of bounds"):
        lt.linear_cross_entropy(x, w, torch.full((16,), 9))
    with pytest.raises(RuntimeError, match="do not match"):
        lt.linear_cross_entropy(rand(16, 5), w, y)
    with pytest.raises(ValueError, match="valid value"):
        lt.linear_cross_entropy(x, w, y, reduction="average")
    nan = lt.linear_cross_entropy(x, w, torch.full((16,), -100))
    assert torch.isnan(nan)


def test_linear_cross_entropy_dtypes_and_edges():
    """bfloat16 inputs computed in float32 on their values; class weight and prior of the
    wrong length refused before the C call; a mean over nothing: NaN loss, zero gradient
    where PyTorch's is zero; non-finite hidden states computed by PyTorch."""
    x32, w32 = rand(6, 4).to(torch.bfloat16), rand(5, 4).to(torch.bfloat16)
    y = torch.randint(0, 5, (6,), generator=GEN)
    x = x32.clone().requires_grad_(True)
    w = w32.clone().requires_grad_(True)
    loss = lt.linear_cross_entropy(x, w, y, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    xf = x32.float().requires_grad_(True)
    wf = w32.float().requires_grad_(True)
    lf = lt.linear_cross_entropy(xf, wf, y, label_smoothing=0.1)
    lf.backward()
    if not lt._bf16_products():  # converted to float32: the same numbers, rounded
        assert torch.equal(loss, lf.detach().to(torch.bfloat16))
        assert torch.equal(x.grad, xf.grad.to(torch.bfloat16))
    else:  # bf16 products: the logits' gradient G rounded to bf16 for dH = G W, dW = G^T H
        assert torch.equal(loss, lf.detach().to(torch.bfloat16))  # logits: exact products
        g = torch.softmax(F.linear(x32.double(), w32.double()), 1)
        g -= 0.9 * F.one_hot(y, 5) + 0.1 / 5
        g = g.abs() / 6
        # G's rounding to bf16 (its unit roundoff, 2^-8 of |G|), then the output's
        # rounding to bf16 (2^-8 of the value)
        for got, want, bound in ((x.grad, xf.grad, g @ w32.double().abs()),
                                 (w.grad, wf.grad, g.T @ x32.double().abs())):
            err = (got.double() - want.double()).abs()
            assert bool((err <= 2.0 ** -8 * bound + 2.0 ** -8 * want.double().abs()).all())
    a, b = rand(6, 4), rand(5, 4)
    for kw in (dict(weight=torch.ones(3)), dict(weight=torch.ones(50)), dict(prior=torch.ones(3))):
        with pytest.raises(RuntimeError, match="expected"):
            lt.linear_cross_entropy(a, b, y, **kw)
    xa = a.clone().requires_grad_(True)
    wa = b.clone().requires_grad_(True)
    none = lt.linear_cross_entropy(xa, wa, torch.full((6,), -100))
    none.backward()
    xt = a.clone().requires_grad_(True)
    wt = b.clone().requires_grad_(True)
    ref = F.cross_entropy(F.linear(xt, wt), torch.full((6,), -100))
    ref.backward()
    assert torch.isnan(none) and torch.isnan(ref)
    torch.testing.assert_close(xa.grad, xt.grad, equal_nan=True)
    torch.testing.assert_close(wa.grad, wt.grad, equal_nan=True)
    bad = a.clone()
    bad[2, 1] = float("nan")
    assert torch.isnan(lt.linear_cross_entropy(bad, b, y))
    # the same in bfloat16 with float32 class weights, as the kernel path accepts them
    out = lt.linear_cross_entropy(bad.to(torch.bfloat16), b.to(torch.bfloat16), y,
                                  weight=torch.ones(5))
    assert torch.isnan(out) and out.dtype == torch.bfloat16


@pytest.mark.parametrize("shape", [(9,), (3, 4)])
def test_linear_cross_entropy_reduction_none(shape):
    """Reduction 'none': per-row losses of the target's shape, and gradients for any
    upstream weights (the backward calls the fused op again with them), against the
    float64 composite; a second backward works too."""
    d, c = 5, 11
    x32, w32, b32 = rand(*shape, d) / 2, rand(c, d) / 2, rand(c)
    y = torch.randint(0, c, shape, generator=GEN)
    y.view(-1)[1] = -100
    up = torch.rand(shape, generator=GEN) * 2 - 0.5
    x, w, b = (t.clone().requires_grad_(True) for t in (x32, w32, b32))
    ours = lt.linear_cross_entropy(x, w, y, linear_bias=b, reduction="none", label_smoothing=0.1)
    assert ours.shape == y.shape
    (ours * up).sum().backward(retain_graph=True)
    x2, w2, b2 = (t.double().requires_grad_(True) for t in (x32, w32, b32))
    logits = F.linear(x2, w2, b2)
    logits.retain_grad()
    theirs = F.cross_entropy(logits.reshape(-1, c), y.reshape(-1), reduction="none",
                             label_smoothing=0.1).reshape(shape)
    (theirs * up.double()).sum().backward()
    # as in test_linear_cross_entropy_matches_the_composite: 4 (inner + D + 2) u M
    u, g = 2.0**-24, logits.grad.reshape(-1, c).abs()
    rows = g.shape[0]
    bounds = (4 * (c + d + 2) * u * float((g @ w2.detach().abs()).max()),
              4 * (rows + d + 2) * u * float((g.t() @ x2.detach().reshape(-1, d).abs()).max()),
              4 * (rows + d + 2) * u * float(g.sum(0).max()))
    torch.testing.assert_close(ours.double(), theirs.detach(), rtol=1e-5, atol=1e-6)
    for (a, t2), bound in zip(((x, x2), (w, w2), (b, b2)), bounds):
        torch.testing.assert_close(a.grad.double(), t2.grad, rtol=1e-5, atol=bound)
    first = w.grad.clone()
    (ours * up).sum().backward()  # again: accumulated
    torch.testing.assert_close(w.grad, 2 * first)

"""Local response normalisation (§3.3), as its own layer with a hand-written gradient.

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ** beta

``torch.nn.LocalResponseNorm`` builds this from several autograd ops (square,
pad, avg_pool3d, mul, add, pow, div) and differentiates each of them; on the
CPU that costs several times conv1 itself (facts.md).  Each elementwise op is
a memory-bound pass over conv1's maps (74 MB at batch 64), so the layer makes
as few passes as it can: the forward pass is ``n`` fused multiply-adds for
``d = k + alpha * window_sum(a^2)``, three passes for ``d^-beta`` and one for
the output ``b``; the backward pass is the closed form

    dL/da[i] = g[i] * d[i]^-beta
               - 2 * alpha * beta * a[i] * sum_{j : i in window(j)} g[j] * b[j] / d[j]

(``b[j] / d[j] = a[j] * d[j]^(-beta - 1)``) in ``n + 3`` passes, reusing ``d``,
``d^-beta`` and ``b`` from the forward pass.  The window is symmetric for odd
``n``, so the inner sum is again a window sum (of the transposed window for
even ``n``).

Both memory formats run without a layout copy: the window runs over dim 2 of
an (N, G, C/G, H*W) view of NCHW input or of an (N*H*W, G, C/G) view of
channels-last (NHWC) input, and the output keeps the input's format.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from alexnet.errors import UserError
from alexnet.paper import LRN_PARAMS

#: Implementations: ``auto`` picks the fused Triton kernels (:mod:`alexnet.net.lrn_triton`)
#: for 4-D CUDA tensors when Triton is installed and this module's passes otherwise;
#: ``torch`` and ``triton`` force one (``triton`` on CPU tensors needs TRITON_INTERPRET=1).
ENGINES: tuple[str, ...] = ("auto", "torch", "triton")
#: The kernels compute in float32, so ``auto`` leaves float64 (gradcheck) to the passes.
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: Half-precision inputs (autocast) are normalised in float32 by the CPU passes.
_HALF_DTYPES = (torch.bfloat16, torch.float16)


def _shifts(before: int, after: int, size: int) -> list[int]:
    """The window's offsets other than 0 that fit in ``size``: +1..+after, then -1..-before."""
    return list(range(1, min(after, size - 1) + 1)) + [-s for s in range(1, min(before, size - 1) + 1)]


def _shifted(out: Tensor, x: Tensor, shift: int, dim: int) -> tuple[Tensor, Tensor]:
    """The views ``out[i]`` and ``x[i + shift]`` along ``dim``, over the ``i`` where both exist."""
    m = x.shape[dim] - abs(shift)
    if shift > 0:
        return out.narrow(dim, 0, m), x.narrow(dim, shift, m)
    return out.narrow(dim, -shift, m), x.narrow(dim, 0, m)


def window_sum(x: Tensor, before: int, after: int, dim: int = 1, out: Tensor | None = None) -> Tensor:
    """Sum over ``i - before <= j <= i + after`` (clipped at the ends) along ``dim``.

    The centre and the first offset are added in one pass straight into ``out``
    (no clone of ``x``); every further offset is one in-place add of contiguous
    blocks, so the whole sum is ``before + after`` passes.
    """
    out = torch.empty_like(x) if out is None else out
    shifts = _shifts(before, after, x.shape[dim])
    if not shifts:
        return out.copy_(x)
    first = shifts[0]
    o, xs = _shifted(out, x, first, dim)
    torch.add(_shifted(x, x, first, dim)[0], xs, out=o)
    # the |first| end positions that offset does not reach hold x alone
    start = x.shape[dim] - first if first > 0 else 0
    out.narrow(dim, start, abs(first)).copy_(x.narrow(dim, start, abs(first)))
    for shift in shifts[1:]:
        o, xs = _shifted(out, x, shift, dim)
        o.add_(xs)
    return out


def _denominator(a: Tensor, before: int, after: int, alpha: float, k: float, dim: int) -> Tensor:
    """``k + alpha * window_sum(a^2)`` as one ``addcmul`` per window offset (no squared copy of ``a``)."""
    d = torch.addcmul(a.new_full((), k), a, a, value=alpha)
    for shift in _shifts(before, after, a.shape[dim]):
        o, xs = _shifted(d, a, shift, dim)
        o.addcmul_(xs, xs, value=alpha)
    return d


def inverse_power(d: Tensor, beta: float, out: Tensor) -> Tensor:
    """``out = d ** -beta``; for the paper's beta = 0.75 as d^(1/4) / d, which avoids ``pow``.

    ``pow`` is a transcendental per element and costs about eight ``sqrt`` passes
    on the CPU; 0.75 is the value of §3.3 and of the 2012 code.
    """
    if beta == 0.75:
        torch.sqrt(d, out=out)
        out.sqrt_()
        return out.div_(d)
    return torch.pow(d, -beta, out=out)


def _channels_last(a: Tensor) -> bool:
    """Whether ``a`` is worked on in its NHWC layout (NCHW-contiguous wins where both hold)."""
    return a.dim() == 4 and not a.is_contiguous() and a.is_contiguous(memory_format=torch.channels_last)


def _columns(x: Tensor, groups: int, nhwc: bool) -> Tensor:
    """A view of ``x`` with the channels of each column along dim 2: (N, G, C/G, H*W) or (N*H*W, G, C/G)."""
    if nhwc:
        n, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).view(n * h * w, groups, c // groups)
    return x.view(x.shape[0], groups, x.shape[1] // groups, -1)


def _uncolumns(v: Tensor, shape: torch.Size, nhwc: bool) -> Tensor:
    """Inverse of :func:`_columns` for a contiguous ``v``: back to ``shape`` in the same layout."""
    if nhwc:
        n, c, h, w = shape
        return v.view(n, h, w, c).permute(0, 3, 1, 2)
    return v.view(shape)


class _LRNFunction(torch.autograd.Function):
    """Cross-map LRN with the closed-form backward of the module docstring."""

    @staticmethod
    def forward(ctx, a: Tensor, n: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:  # type: ignore[override]
        before, after = n // 2, (n - 1) // 2
        nhwc = _channels_last(a)
        if not nhwc:
            a = a.contiguous()
        av = _columns(a, groups, nhwc)
        d = _denominator(av, before, after, alpha, k, dim=2)
        scale = inverse_power(d, beta, out=torch.empty_like(d))  # d^-beta
        b = torch.mul(av, scale)
        ctx.save_for_backward(av, d, scale, b)
        ctx.lrn = (before, after, alpha, beta, a.shape, nhwc)
        return _uncolumns(b, a.shape, nhwc)

    @staticmethod
    @once_differentiable  # the closed form is built from saved tensors: no second derivative
    def backward(ctx, g: Tensor):  # type: ignore[override]
        av, d, scale, b = ctx.saved_tensors
        before, after, alpha, beta, shape, nhwc = ctx.lrn
        g = g.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        gv = _columns(g, av.shape[1], nhwc)
        t = torch.mul(gv, b).div_(d)  # g_j b_j / d_j = g_j a_j d_j^(-beta-1)
        # i lies in window(j) iff j - before <= i <= j + after: the transposed window.
        inner = window_sum(t, after, before, dim=2)
        grad = torch.mul(gv, scale, out=t)
        grad.addcmul_(av, inner, value=-2.0 * alpha * beta)
        return _uncolumns(grad, shape, nhwc), None, None, None, None, None


def local_response_norm(
    a: Tensor,
    n: int = LRN_PARAMS.n,
    alpha: float = LRN_PARAMS.alpha,
    beta: float = LRN_PARAMS.beta,
    k: float = LRN_PARAMS.k,
    alpha_divided_by_n: bool = False,
    groups: int = 1,
    engine: str = "auto",
) -> Tensor:
    """Functional §3.3 normalisation over the channel dimension of (N, C, H, W) ``a``.

    ``alpha_divided_by_n``: False multiplies the sum by ``alpha`` as printed in §3.3;
    True by ``alpha / n``, as the authors' 2012 code (and torch.nn.LocalResponseNorm,
    and Caffe) do (:attr:`alexnet.paper.Reading.lrn_alpha_divided_by_n`).
    ``groups`` splits the channels into that many columns normalised separately
    (the window never crosses a column boundary), as on the paper's two GPUs.
    ``engine`` picks the implementation (:data:`ENGINES`); all give the same numbers.
    """
    effective_alpha = alpha / n if alpha_divided_by_n else alpha
    if a.shape[1] % groups:
        raise ValueError(f"LRN: {a.shape[1]} channels do not split into {groups} groups")
    if _use_triton(a, engine):
        from alexnet.net.lrn_triton import TritonLRNFunction

        return TritonLRNFunction.apply(a, n, effective_alpha, beta, k, groups)  # float32 inside the kernels
    if a.dtype in _HALF_DTYPES:
        # bf16 keeps 8 bits of mantissa: the window's sum of squares and the power lose ~1% in it.
        # Compute in float32 and round once at the end (autograd carries the casts backwards).
        return _LRNFunction.apply(a.float(), n, effective_alpha, beta, k, groups).to(a.dtype)
    return _LRNFunction.apply(a, n, effective_alpha, beta, k, groups)


def _use_triton(a: Tensor, engine: str) -> bool:
    """Whether ``engine`` sends ``a`` to the fused Triton kernels."""
    if engine == "torch":
        return False
    if engine not in ENGINES:
        raise UserError(f"lrn engine: unknown value {engine!r}; allowed: {', '.join(ENGINES)}")
    if engine == "auto" and not (a.is_cuda and a.dim() == 4 and a.dtype in _TRITON_DTYPES):
        return False  # decided before importing Triton: CPU forward passes never load it
    from alexnet.net import lrn_triton

    if engine == "triton":
        if not lrn_triton.available():
            raise UserError("lrn engine 'triton': Triton is not installed (it comes with torch's CUDA builds)")
        if a.dim() != 4:
            raise ValueError(f"LRN: the Triton kernels take (N, C, H, W) tensors, got {a.dim()}-D")
    return lrn_triton.available()


class LocalResponseNorm(nn.Module):
    """§3.3 response normalisation across ``n`` adjacent kernel maps.

    ``alpha_divided_by_n=False`` uses alpha as printed; ``True`` divides it by
    ``n`` (the authors' code, ``torch.nn.LocalResponseNorm`` and Caffe).  So
    ``LocalResponseNorm(5, a, b, k, alpha_divided_by_n=True)`` equals
    ``torch.nn.LocalResponseNorm(5, a, b, k)`` and the paper's reading equals
    ``torch.nn.LocalResponseNorm(5, 5 * a, b, k)``.  On CUDA tensors the fused
    Triton kernels of :mod:`alexnet.net.lrn_triton` run (``engine="auto"``).
    """

    def __init__(
        self,
        n: int = LRN_PARAMS.n,
        alpha: float = LRN_PARAMS.alpha,
        beta: float = LRN_PARAMS.beta,
        k: float = LRN_PARAMS.k,
        alpha_divided_by_n: bool = False,
        groups: int = 1,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        self.n, self.alpha, self.beta, self.k = n, alpha, beta, k
        self.alpha_divided_by_n, self.groups, self.engine = alpha_divided_by_n, groups, engine

    @property
    def effective_alpha(self) -> float:
        """The coefficient that multiplies the window's sum of squares."""
        return self.alpha / self.n if self.alpha_divided_by_n else self.alpha

    def forward(self, a: Tensor) -> Tensor:
        return local_response_norm(a, self.n, self.alpha, self.beta, self.k, self.alpha_divided_by_n, self.groups,
                                   self.engine)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"alpha_divided_by_n={self.alpha_divided_by_n}, groups={self.groups}"
        )


class SameMapNorm(nn.Module):
    """cuda-convnet's ``rnorm`` (the 2012 code's ``cnorm2``): normalisation within one map.

    b = a / (k + scale * mean_{size x size neighbourhood} a^2) ** pow, zero-padded
    at the borders; cuda-convnet divides ``scale`` by ``size**2``, which is what the
    mean does.  Only the ``code2012`` reading uses it; autograd is fast enough here
    because it runs once, on 27x27 maps.
    """

    def __init__(self, size: int, scale: float, power: float, k: float) -> None:
        super().__init__()
        self.size, self.scale, self.power, self.k = size, scale, power, k

    def forward(self, a: Tensor) -> Tensor:
        mean_sq = F.avg_pool2d(a * a, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return a * (self.k + self.scale * mean_sq).pow(-self.power)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, pow={self.power}, k={self.k}"

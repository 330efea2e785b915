"""Local response normalisation (§3.3), as its own layer with a hand-written gradient.

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ** beta

``torch.nn.LocalResponseNorm`` builds this from several autograd ops (square,
pad, avg_pool3d, mul, add, pow, div) and differentiates each of them; on the
CPU that costs several times conv1 itself (facts.md).  Here the forward pass is
three memory passes plus the ``n - 1`` shifted adds of the window sum, and the
backward pass is the closed form

    dL/da[i] = g[i] * d[i]^-beta
               - 2 * alpha * beta * a[i] * sum_{j : i in window(j)} g[j] * a[j] * d[j]^(-beta - 1)

with ``d = k + alpha * window_sum(a^2)``.  The window is symmetric for odd
``n``, so the inner sum is again a window sum (of the transposed window for
even ``n``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from alexnet.errors import UserError
from alexnet.paper import LRN_PARAMS

#: The two conventions for alpha.  ``paper``: alpha multiplies the sum as printed
#: in §3.3.  ``code2012``: alpha is divided by n first, as the authors' code (and
#: torch.nn.LocalResponseNorm, and Caffe) do.
CONVENTIONS: tuple[str, ...] = ("paper", "code2012")


def window_sum(x: Tensor, before: int, after: int, dim: int = 1) -> Tensor:
    """Sum over ``i - before <= j <= i + after`` (clipped at the ends) along ``dim``.

    Written as ``before + after`` in-place shifted adds of contiguous blocks:
    on the CPU a fresh 70 MB tensor costs about as much as seven elementwise
    passes (page faults), so the layer allocates as little as it can.
    """
    out = x.clone()
    size = x.shape[dim]
    for shift in range(1, min(after, size - 1) + 1):
        out.narrow(dim, 0, size - shift).add_(x.narrow(dim, shift, size - shift))
    for shift in range(1, min(before, size - 1) + 1):
        out.narrow(dim, shift, size - shift).add_(x.narrow(dim, 0, size - shift))
    return out


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


class _LRNFunction(torch.autograd.Function):
    """Cross-map LRN with the closed-form backward of the module docstring."""

    @staticmethod
    def forward(ctx, a: Tensor, n: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:  # type: ignore[override]
        before, after = n // 2, (n - 1) // 2
        shape = a.shape
        a = a.contiguous().view(shape[0], groups, shape[1] // groups, -1)  # (N, G, C/G, H*W)
        sq = torch.mul(a, a)  # reused below for the output
        d = window_sum(sq, before, after, dim=2)
        d.mul_(alpha).add_(k)  # d = k + alpha * sum a^2
        b = inverse_power(d, beta, out=sq).mul_(a)
        ctx.save_for_backward(a, d)
        ctx.lrn = (before, after, alpha, beta, shape)
        return b.view(shape)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        a, d = ctx.saved_tensors
        before, after, alpha, beta, shape = ctx.lrn
        g = g.contiguous().view(a.shape)
        scale = inverse_power(d, beta, out=torch.empty_like(d))  # d^-beta
        t = torch.mul(g, a).mul_(scale).div_(d)  # g_j a_j d_j^(-beta-1)
        # i lies in window(j) iff j - before <= i <= j + after: the transposed window.
        inner = window_sum(t, after, before, dim=2)
        grad = torch.mul(g, scale, out=t)
        grad.sub_(inner.mul_(a).mul_(2.0 * alpha * beta))
        return grad.view(shape), None, None, None, None, None


def local_response_norm(
    a: Tensor,
    n: int = LRN_PARAMS.n,
    alpha: float = LRN_PARAMS.alpha,
    beta: float = LRN_PARAMS.beta,
    k: float = LRN_PARAMS.k,
    convention: str = "paper",
    groups: int = 1,
) -> Tensor:
    """Functional §3.3 normalisation over the channel dimension of (N, C, H, W) ``a``.

    ``groups`` splits the channels into that many columns normalised separately
    (the window never crosses a column boundary), as on the paper's two GPUs.
    """
    if convention not in CONVENTIONS:
        raise UserError(f"lrn convention: unknown value {convention!r}; allowed: {', '.join(CONVENTIONS)}")
    effective_alpha = alpha / n if convention == "code2012" else alpha
    if a.shape[1] % groups:
        raise ValueError(f"LRN: {a.shape[1]} channels do not split into {groups} groups")
    return _LRNFunction.apply(a, n, effective_alpha, beta, k, groups)


class LocalResponseNorm(nn.Module):
    """§3.3 response normalisation across ``n`` adjacent kernel maps.

    ``convention="paper"`` uses alpha as printed; ``"code2012"`` divides it by
    ``n`` (the authors' code, ``torch.nn.LocalResponseNorm`` and Caffe).  So
    ``LocalResponseNorm(5, a, b, k, "code2012")`` equals
    ``torch.nn.LocalResponseNorm(5, a, b, k)`` and the paper's reading equals
    ``torch.nn.LocalResponseNorm(5, 5 * a, b, k)``.
    """

    def __init__(
        self,
        n: int = LRN_PARAMS.n,
        alpha: float = LRN_PARAMS.alpha,
        beta: float = LRN_PARAMS.beta,
        k: float = LRN_PARAMS.k,
        convention: str = "paper",
        groups: int = 1,
    ) -> None:
        super().__init__()
        if convention not in CONVENTIONS:
            raise UserError(f"lrn convention: unknown value {convention!r}; allowed: {', '.join(CONVENTIONS)}")
        self.n, self.alpha, self.beta, self.k = n, alpha, beta, k
        self.convention, self.groups = convention, groups

    def forward(self, a: Tensor) -> Tensor:
        return local_response_norm(a, self.n, self.alpha, self.beta, self.k, self.convention, self.groups)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"convention={self.convention}, groups={self.groups}"
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

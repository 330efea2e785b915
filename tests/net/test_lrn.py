"""§3.3 local response normalisation against a literal transcription of the formula."""

from __future__ import annotations

import pytest
import torch

from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm, SameMapNorm, local_response_norm
from alexnet.paper import LRN_PARAMS


def lrn_by_loop(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """b^i_{x,y} = a^i_{x,y} / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} (a^j_{x,y})^2)^beta."""
    batch, channels, height, width = a.shape
    b = torch.empty_like(a)
    for s in range(batch):
        for i in range(channels):
            lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
            for y in range(height):
                for x in range(width):
                    total = sum(a[s, j, y, x] ** 2 for j in range(lo, hi + 1))
                    b[s, i, y, x] = a[s, i, y, x] / (k + alpha * total) ** beta
    return b


@pytest.fixture
def activity() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # large enough activities that the denominator differs visibly from k^beta
    return torch.relu(torch.randn(2, 7, 3, 4, generator=g, dtype=torch.float64)) * 40


def test_paper_convention_matches_the_printed_formula(activity: torch.Tensor) -> None:
    p = LRN_PARAMS
    expected = lrn_by_loop(activity, p.n, p.alpha, p.beta, p.k)
    got = LocalResponseNorm(p.n, p.alpha, p.beta, p.k, alpha_divided_by_n=False)(activity)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    # and it is visibly different from the alpha/n convention
    other = LocalResponseNorm(p.n, p.alpha, p.beta, p.k, alpha_divided_by_n=True)(activity)
    assert (other - expected).abs().max() > 1e-3


def test_code2012_convention_divides_alpha_by_n(activity: torch.Tensor) -> None:
    p = LRN_PARAMS
    expected = lrn_by_loop(activity, p.n, p.alpha / p.n, p.beta, p.k)
    got = LocalResponseNorm(p.n, p.alpha, p.beta, p.k, alpha_divided_by_n=True)(activity)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_matches_torch_with_converted_alpha(activity: torch.Tensor) -> None:
    p = LRN_PARAMS
    ours = LocalResponseNorm(p.n, p.alpha, p.beta, p.k, alpha_divided_by_n=False)(activity)
    theirs = torch.nn.LocalResponseNorm(p.n, alpha=p.alpha * p.n, beta=p.beta, k=p.k)(activity)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("divided", [False, True])
@pytest.mark.parametrize("beta", [LRN_PARAMS.beta, 0.6])
@pytest.mark.parametrize("n", [LRN_PARAMS.n, 4])
def test_gradient_is_exact(divided: bool, beta: float, n: int) -> None:
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(2, 6, 3, 3, generator=g, dtype=torch.float64) * 30).requires_grad_()
    layer = LocalResponseNorm(n, LRN_PARAMS.alpha, beta, LRN_PARAMS.k, alpha_divided_by_n=divided)
    assert torch.autograd.gradcheck(layer, (a,))


def test_columns_are_normalised_separately() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.relu(torch.randn(1, 8, 2, 2, generator=g, dtype=torch.float64)) * 40
    p = LRN_PARAMS
    both = LocalResponseNorm(p.n, p.alpha, p.beta, p.k, groups=2)(a)
    expected = torch.cat([lrn_by_loop(a[:, :4], p.n, p.alpha, p.beta, p.k), lrn_by_loop(a[:, 4:], p.n, p.alpha, p.beta, p.k)], 1)
    assert torch.allclose(both, expected, atol=1e-12)
    a2 = a.clone().requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNorm(p.n, p.alpha, p.beta, p.k, groups=2), (a2,))


def test_float32_agrees_with_float64(activity: torch.Tensor) -> None:
    layer = LocalResponseNorm()
    assert torch.allclose(layer(activity.float()).double(), layer(activity), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [3, 5])
def test_same_map_norm_matches_loop(size: int) -> None:
    """The neighbourhood is size x size centred on the unit (half = size // 2 on each side), zero-padded: a
    size of 5 reaches two units out, which a wrong padding (a window off centre) would not."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64) * 20
    scale, power, k = 0.01, 0.75, 1.0
    half = (size - 1) // 2  # by hand: 1 for 3, 2 for 5
    got = SameMapNorm(size, scale, power, k)(a)
    exp = torch.empty_like(a)
    for c in range(2):
        for y in range(5):
            for x in range(5):
                total = sum(
                    a[0, c, yy, xx] ** 2
                    for yy in range(y - half, y + half + 1)
                    for xx in range(x - half, x + half + 1)
                    if 0 <= yy < 5 and 0 <= xx < 5
                )
                exp[0, c, y, x] = a[0, c, y, x] / (k + scale / size**2 * total) ** power
    assert torch.allclose(got, exp, atol=1e-12)


def test_unknown_reading_is_a_user_error() -> None:
    from alexnet.paper import reading

    with pytest.raises(UserError, match="allowed: paper, code2012"):
        reading("caffe")


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("n", [LRN_PARAMS.n, 4])
def test_channels_last_input_gives_the_same_values_and_layout(groups: int, n: int) -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.relu(torch.randn(2, 8, 3, 5, generator=g, dtype=torch.float64)) * 40
    p = LRN_PARAMS
    layer = LocalResponseNorm(n, p.alpha, p.beta, p.k, groups=groups)
    a_cl = a.contiguous(memory_format=torch.channels_last).requires_grad_()
    a_cf = a.clone().requires_grad_()
    out_cl, out_cf = layer(a_cl), layer(a_cf)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)  # no layout copy
    if n % 2:  # the printed formula's window i - n/2 .. i + n/2 is defined for odd n
        expected = torch.cat([lrn_by_loop(c, n, p.alpha, p.beta, p.k) for c in a.chunk(groups, 1)], 1)
        assert torch.allclose(out_cl, expected, rtol=0, atol=1e-12)
    assert torch.allclose(out_cl, out_cf, rtol=0, atol=1e-12)
    weight = torch.randn(a.shape, generator=g, dtype=torch.float64)
    (out_cl * weight).sum().backward()
    (out_cf * weight).sum().backward()
    assert a_cl.grad is not None and a_cf.grad is not None
    assert torch.allclose(a_cl.grad, a_cf.grad, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(layer, (a_cl.detach().clone().requires_grad_(),))


def test_channels_last_gradient_with_an_nchw_upstream_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    a = (torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64) * 30).contiguous(memory_format=torch.channels_last)
    layer = LocalResponseNorm(groups=2)
    # the permute makes the incoming gradient's layout differ from the input's
    f = lambda x: layer(x).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).sin()  # noqa: E731
    assert torch.autograd.gradcheck(f, (a.requires_grad_(),))


def test_float32_channels_last_model_matches_nchw() -> None:
    from alexnet.net.model import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(input_size=64, width=0.25, fc_units=64, num_classes=10)).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_unknown_lrn_engine_is_a_user_error() -> None:
    with pytest.raises(UserError, match="allowed: auto, torch, triton"):
        local_response_norm(torch.ones(1, 4, 2, 2), engine="cuda")


def test_auto_engine_keeps_cpu_and_float64_tensors_on_the_passes() -> None:
    from alexnet.net.lrn import _use_triton

    assert not _use_triton(torch.ones(1, 4, 2, 2), "auto")
    assert not _use_triton(torch.ones(1, 4, 2, 2), "torch")


def test_window_sum_by_hand_at_both_ends() -> None:
    """Maps 1, 2, 4, 8, 16: the sums over i-2..i and i..i+2 (clipped), and a window wider than the maps."""
    from alexnet.net.lrn import window_sum

    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64).view(1, 5, 1, 1)
    assert window_sum(x, 2, 0).flatten().tolist() == [1, 3, 7, 14, 28]
    assert window_sum(x, 0, 2).flatten().tolist() == [7, 14, 28, 24, 16]
    assert window_sum(x, 1, 1).flatten().tolist() == [3, 7, 14, 28, 24]
    assert window_sum(x, 9, 9).flatten().tolist() == [31] * 5
    assert window_sum(x, 0, 0).flatten().tolist() == [1, 2, 4, 8, 16]


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_fewer_maps_than_the_window(channels: int) -> None:
    """A column of 1-3 maps under the n = 5 window: every map's sum covers the whole column."""
    g = torch.Generator().manual_seed(6)
    a = torch.relu(torch.randn(1, channels, 2, 2, generator=g, dtype=torch.float64)) * 40
    p = LRN_PARAMS
    got = LocalResponseNorm(p.n, p.alpha, p.beta, p.k)(a)
    assert torch.allclose(got, lrn_by_loop(a, p.n, p.alpha, p.beta, p.k), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(LocalResponseNorm(p.n, p.alpha, p.beta, p.k), (a.clone().requires_grad_(),))


def test_another_beta_matches_the_printed_formula(activity: torch.Tensor) -> None:
    p = LRN_PARAMS
    got = LocalResponseNorm(p.n, p.alpha, 0.6, p.k)(activity)
    assert torch.allclose(got, lrn_by_loop(activity, p.n, p.alpha, 0.6, p.k), rtol=0, atol=1e-12)


def test_window_sum_and_inverse_power_write_into_the_buffer_they_are_given() -> None:
    """The LRN's buffers are reused between calls: the result must be the given ``out`` itself, filled.
    By hand: maps 1, 2, 3, 4 with a window of one before and one after sum to 3, 6, 9, 7; 4 ** -0.5 = 0.5."""
    from alexnet.net.lrn import inverse_power, window_sum

    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    buf = torch.full_like(x, -1.0)
    assert window_sum(x, 1, 1, out=buf) is buf
    assert buf.flatten().tolist() == [3.0, 6.0, 9.0, 7.0]
    d, buf = torch.tensor([4.0, 16.0]), torch.zeros(2)
    assert inverse_power(d, 0.5, out=buf) is buf and buf.tolist() == [0.5, 0.25]


def test_the_papers_beta_avoids_pow(monkeypatch) -> None:
    """§3.3's β = 0.75 is computed as d^(1/4) / d (two square roots and a division), never with ``pow``:
    16 ** -0.75 = 2 / 16 = 0.125."""
    from alexnet.net import lrn

    def no_pow(*args, **kwargs):
        raise AssertionError("pow called for beta 0.75")

    monkeypatch.setattr(lrn.torch, "pow", no_pow)
    out = torch.zeros(1)
    assert lrn.inverse_power(torch.tensor([16.0]), 0.75, out=out).tolist() == [0.125]


def test_nchw_contiguous_wins_where_both_layouts_hold() -> None:
    """A (2, 4, 1, 1) tensor is contiguous in both layouts: the LRN works on it as NCHW; a channels-last copy
    of a (2, 4, 3, 3) tensor is worked on as NHWC; a 3-D tensor is never NHWC."""
    from alexnet.net.lrn import _channels_last

    assert _channels_last(torch.zeros(2, 4, 1, 1)) is False
    assert _channels_last(torch.zeros(2, 4, 3, 3).to(memory_format=torch.channels_last)) is True
    assert _channels_last(torch.zeros(4, 3, 3)) is False


def _paper_lrn_by_hand(a: list[float]) -> list[float]:
    """§3.3 transcribed: b_i = a_i / (k + α Σ_{j=i-2..i+2} a_j²)^β with k = 2, n = 5, α = 1e-4, β = 0.75."""
    return [x / (2 + 1e-4 * sum(v * v for v in a[max(0, i - 2):i + 3])) ** 0.75 for i, x in enumerate(a)]


def test_the_functional_defaults_are_the_papers_in_one_column() -> None:
    a = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    x = torch.tensor(a, dtype=torch.float64).view(1, 6, 1, 1)
    assert local_response_norm(x).flatten().tolist() == pytest.approx(_paper_lrn_by_hand(a), rel=1e-12)
    with pytest.raises(ValueError, match=r"^LRN: 6 channels do not split into 4 groups$"):
        local_response_norm(x, groups=4)


def test_half_precision_is_computed_in_float32_and_returned_in_its_own_dtype() -> None:
    a = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    x = torch.tensor(a).view(1, 6, 1, 1).to(torch.bfloat16)  # these values are exact in bf16
    y = local_response_norm(x)
    assert y.dtype == torch.bfloat16
    want = torch.tensor(_paper_lrn_by_hand(a)).to(torch.bfloat16)  # rounded once, at the end
    assert torch.equal(y.flatten(), want)


def test_the_engine_choice_on_any_machine(monkeypatch) -> None:
    """``auto`` takes Triton only for 4-D float CUDA tensors; ``triton`` names a missing Triton or a wrong rank.
    Triton's presence is faked, and a CUDA tensor is stood in for by its three attributes."""
    from types import SimpleNamespace

    from alexnet.net import lrn, lrn_triton

    cuda = SimpleNamespace(is_cuda=True, dim=lambda: 4, dtype=torch.float32)
    monkeypatch.setattr(lrn_triton, "available", lambda: True)
    assert lrn._use_triton(cuda, "auto") is True
    assert lrn._use_triton(SimpleNamespace(is_cuda=True, dim=lambda: 3, dtype=torch.float32), "auto") is False
    assert lrn._use_triton(SimpleNamespace(is_cuda=True, dim=lambda: 4, dtype=torch.float64), "auto") is False
    assert lrn._use_triton(torch.zeros(1, 2, 1, 1), "triton") is True
    with pytest.raises(ValueError, match=r"^LRN: the Triton kernels take \(N, C, H, W\) tensors, got 3-D$"):
        lrn._use_triton(torch.zeros(2, 1, 1), "triton")
    monkeypatch.setattr(lrn_triton, "available", lambda: False)
    assert lrn._use_triton(cuda, "auto") is False
    with pytest.raises(UserError) as err:
        lrn._use_triton(torch.zeros(1, 2, 1, 1), "triton")
    assert str(err.value) == "lrn engine 'triton': Triton is not installed (it comes with torch's CUDA builds)"
    with pytest.raises(UserError, match="lrn engine: unknown value 'AUTO'"):
        local_response_norm(torch.zeros(1, 2, 1, 1), engine="AUTO")


def test_the_layer_passes_its_engine_on(monkeypatch) -> None:
    from alexnet.net import lrn_triton

    monkeypatch.setattr(lrn_triton, "available", lambda: False)
    layer = LocalResponseNorm(engine="triton")
    with pytest.raises(UserError, match="Triton is not installed"):
        layer(torch.ones(1, 4, 2, 2))

"""Binary codes from an auto-encoder and Hamming retrieval (§6.1's proposal)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexnet.probes.codes import (BinaryAutoencoder, CodeModel, CodeSettings, compare, hamming_brute_force, hamming_knn,
                           popcount, train_codes)
from alexnet.errors import UserError


def test_popcount_matches_unpackbits() -> None:
    x = np.arange(256, dtype=np.uint8)
    assert (popcount(x) == np.unpackbits(x[:, None], axis=1).sum(1)).all()


@pytest.mark.parametrize("nbytes", [3, 8, 16])
def test_hamming_matches_brute_force(nbytes) -> None:
    rng = np.random.default_rng(nbytes)
    db = rng.integers(0, 256, (900, nbytes), dtype=np.uint8)
    q = rng.integers(0, 256, (25, nbytes), dtype=np.uint8)
    d, i = hamming_knn(db, q, 11, chunk_rows=250)
    rd, ri = hamming_brute_force(db, q, 11)
    assert (d == rd).all() and (i == ri).all()
    d, i = hamming_knn(db, db[:5], 1)
    assert (i[:, 0] == np.arange(5)).all() and (d == 0).all()


def test_hamming_bad_k() -> None:
    db = np.zeros((4, 8), np.uint8)
    with pytest.raises(UserError, match="between 1 and"):
        hamming_knn(db, db[:1], 5)


def test_straight_through_binarisation() -> None:
    # wide enough that no ReLU layer is dead for every sample (with hidden=4 and three samples
    # the global RNG state left by earlier tests sometimes gave an all-zero gradient; conftest
    # now seeds every test)
    net = BinaryAutoencoder(6, 8, hidden=32)
    x = torch.randn(16, 6, requires_grad=True)
    recon, p = net(x)
    recon.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients pass the 0/1 step
    assert net.encode(x).dtype == torch.bool


def test_codes_retrieve_clusters(tmp_path) -> None:
    """On clustered data, 64-bit codes keep most same-cluster neighbours, and codes save and load."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 40)) * 3
    labels = rng.integers(0, 5, 600)
    x = (centres[labels] + rng.normal(size=(600, 40))).astype(np.float32)
    model = train_codes(x, 64, hidden=64, epochs=15, seed=0)
    codes = model.encode(x)
    assert codes.shape == (600, 8) and codes.dtype == np.uint8
    _, idx = hamming_knn(codes[100:], codes[:100], 5)
    assert (labels[100:][idx] == labels[:100, None]).mean() > 0.8
    model.save(tmp_path / "c.pt")
    assert (CodeModel.load(tmp_path / "c.pt").encode(x) == codes).all()
    with pytest.raises(UserError, match="multiple of 8"):
        train_codes(x, 60)
    res = compare({"v": x[100:]}, {"v": x[:100]}, labels[100:], labels[:100], k=5, code_on=("v",),
                  settings=CodeSettings(bits=(64,), epochs=3, hidden=32))
    assert [r.bytes_per_item for r in res] == [160, 8]
    # precision@5 by brute force: same-label share among each query's 5 nearest (L2, then Hamming)
    d2 = ((x[:100, None, :].astype(np.float64) - x[None, 100:, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :5]
    assert res[0].precision == pytest.approx((labels[100:][nearest] == labels[:100, None]).mean())
    again = train_codes(x[100:], 64, hidden=32, epochs=3, seed=0)
    _, ham = hamming_brute_force(again.encode(x[100:]), again.encode(x[:100]), 5)
    assert res[1].precision == pytest.approx((labels[100:][ham] == labels[:100, None]).mean())
    assert res[0].precision > 0.9 and res[1].precision > 0.5


def test_the_decoder_reads_the_binary_code() -> None:
    """§6.1's proposal is short *binary* codes: the decoder must see 0/1 codes in training, never probabilities,
    while the encoder still gets the sigmoid's gradient (straight through)."""
    torch.manual_seed(0)
    net = BinaryAutoencoder(6, 16, hidden=32, noise=1.0)
    seen = []
    net.decoder.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].detach().clone()))
    x = torch.randn(32, 6)
    net.train()
    recon, p = net(x)
    code = seen[-1]
    assert set(code.unique().tolist()) <= {0.0, 1.0} and 0 < code.mean() < 1
    assert torch.equal(code, (p > 0.5).float())  # p: the noisy sigmoid the code was cut from
    recon.pow(2).sum().backward()
    assert net.encoder[0].weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        recon, _ = net(x)
        assert torch.equal(recon, net.decoder(net.encode(x).float()))  # eval: the code encode() stores

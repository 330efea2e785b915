"""Binary codes from an auto-encoder and Hamming retrieval (§6.1's proposal)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alexnet.probes.codes import (BinaryAutoencoder, CodeModel, CodeSettings, MethodResult, compare,
                                  compare_feature_sets, hamming_brute_force, hamming_knn, popcount, save_results,
                                  table, train_codes)
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


# --------------------------------------------------------------------------- hand-built networks and codes


def _hand_net(dim: int, bits: int, hidden: int, **weights: torch.Tensor) -> BinaryAutoencoder:
    """A :class:`BinaryAutoencoder` whose layers are set by hand (``enc1``, ``enc2``, ``dec1``, ``dec2`` as
    (weight, bias) pairs given flat: ``enc1_w``, ``enc1_b``, ...); unset layers keep their random init."""
    net = BinaryAutoencoder(dim, bits, hidden=hidden)
    layers = {"enc1": net.encoder[0], "enc2": net.encoder[-1], "dec1": net.decoder[0], "dec2": net.decoder[-1]}
    with torch.no_grad():
        for name, value in weights.items():
            layer, part = name.rsplit("_", 1)
            getattr(layers[layer], "weight" if part == "w" else "bias").copy_(value)
    return net.eval()


def _threshold_net(bits: int = 8) -> BinaryAutoencoder:
    """Encoder whose code bit j is ``x[j] > 0.5`` (identity layers, bias -0.5 on the code units)."""
    eye = torch.eye(bits)
    return _hand_net(bits, bits, bits, enc1_w=eye, enc1_b=torch.zeros(bits), enc2_w=eye,
                     enc2_b=torch.full((bits,), -0.5))


def test_autoencoder_defaults() -> None:
    """The documented defaults: 512 hidden units, unit-variance noise on the code units' inputs."""
    net = BinaryAutoencoder(3, 8)
    assert net.hidden == 512 and net.encoder[0].out_features == 512 and net.decoder[0].out_features == 512
    assert net.noise == 1.0


def test_logits_standardise_then_relu() -> None:
    """logits = W2 relu(W1 (x - mean) / scale + b1) + b2, and the decoder has its own ReLU; worked by hand."""
    net = _hand_net(2, 8, 2, enc1_w=torch.eye(2), enc1_b=torch.zeros(2), enc2_w=torch.ones(8, 2),
                    enc2_b=torch.full((8,), -1.5), dec1_w=torch.stack([torch.ones(8), -torch.ones(8)]) / 8,
                    dec1_b=torch.zeros(2), dec2_w=torch.eye(2), dec2_b=torch.zeros(2))
    net.mean.fill_(1.0)
    net.scale.fill_(2.0)
    x = torch.tensor([[5.0, -3.0]])
    # standardised (2, -2) -> relu (2, 0) -> 2 - 1.5 = 0.5 on every code unit
    assert torch.allclose(net.logits(x), torch.full((1, 8), 0.5))
    # eval: code all ones -> hidden (1, -1) -> relu (1, 0) -> reconstruction (1, 0)
    recon, p = net(x)
    assert torch.allclose(recon, torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(p, torch.sigmoid(torch.tensor(0.5)).expand(1, 8))


def test_a_zero_logit_is_a_zero_bit_in_forward_as_in_encode() -> None:
    """sigmoid(0) = 0.5 exactly: forward's code bit (p > 0.5) is 0 there, the same bit encode() stores (z > 0)."""
    net = _hand_net(2, 8, 2, enc2_w=torch.zeros(8, 2), enc2_b=torch.zeros(8), dec1_w=torch.ones(2, 8),
                    dec1_b=torch.zeros(2), dec2_w=torch.eye(2), dec2_b=torch.zeros(2))
    x = torch.tensor([[0.3, -1.0], [2.0, 4.0]])
    recon, p = net(x)
    assert (p == 0.5).all()
    assert not net.encode(x).any()
    assert torch.equal(recon, torch.zeros(2, 2))  # the decoder saw eight 0 bits


def test_a_tiny_positive_logit_is_a_one_bit_in_forward_as_in_encode() -> None:
    """z = 1e-8 > 0 is a 1 bit in encode(); in float32 sigmoid(1e-8) rounds to exactly 0.5, so a bit made as
    p > 0.5 would be 0 there: the decoder would train on other codes than those stored."""
    net = _hand_net(2, 8, 2, enc2_w=torch.zeros(8, 2), enc2_b=torch.full((8,), 1e-8), dec1_w=torch.ones(2, 8),
                    dec1_b=torch.zeros(2), dec2_w=torch.eye(2), dec2_b=torch.zeros(2))
    net.eval()
    x = torch.tensor([[0.3, -1.0]])
    recon, p = net(x)
    assert (p == 0.5).all()  # float32's sigmoid cannot tell z = 1e-8 from 0
    assert net.encode(x).all()
    assert torch.equal(recon, torch.full((1, 2), 8.0))  # the decoder saw eight 1 bits, as encode() stores


@pytest.mark.parametrize("noise", [0.5, 1.0])
def test_training_noise_is_added_to_the_logits(noise: float) -> None:
    """In training, p = sigmoid(logits + noise * e) with e the global generator's standard normal draws."""
    net = BinaryAutoencoder(4, 8, hidden=8, noise=noise)
    x = torch.randn(5, 4)
    net.train()
    torch.manual_seed(3)
    _, p = net(x)
    with torch.no_grad():
        z = net.logits(x)
        torch.manual_seed(3)
        expected = torch.sigmoid(z + noise * torch.randn(z.shape))
    assert torch.allclose(p, expected)
    assert not torch.allclose(p, torch.sigmoid(z))  # the noise is really there


def test_encode_packs_eight_bits_a_byte_in_batches() -> None:
    """CodeModel.encode packs bit j of a code into byte j // 8, most significant first, for every row,
    whatever the batch size and the input's float type."""
    want = np.array([[165], [0], [1], [128], [255], [170], [85]], np.uint8)
    x = np.unpackbits(want, axis=1).astype(np.float64)  # bit j of the row = x[j]; threshold 0.5
    model = CodeModel(_threshold_net())
    assert (model.encode(x, batch=2) == want).all()
    assert (model.encode(x.astype(np.float32)) == want).all()


def test_code_model_save_and_load_round_trip(tmp_path) -> None:
    """save() makes missing folders; load() gives back the size, the noise level, the weights and the history."""
    net = BinaryAutoencoder(8, 16, hidden=12, noise=0.25)
    model = CodeModel(net, [3.0, 2.5])
    path = tmp_path / "a" / "b" / "codes.pt"
    model.save(path)
    back = CodeModel.load(path)
    assert back.history == [3.0, 2.5]
    assert (back.net.dim, back.bits, back.net.hidden, back.net.noise) == (8, 16, 12, 0.25)
    x = np.random.default_rng(0).normal(size=(9, 8))
    assert (back.encode(x) == model.encode(x)).all()


def test_load_a_code_model_without_history(tmp_path) -> None:
    """A file with no training history loads with an empty one."""
    net = BinaryAutoencoder(4, 8, hidden=6, noise=0.5)
    torch.save({"kind": "alexnet-codes", "dim": 4, "bits": 8, "hidden": 6, "noise": 0.5,
                "state": net.state_dict()}, tmp_path / "c.pt")
    back = CodeModel.load(tmp_path / "c.pt")
    assert back.history == [] and back.net.noise == 0.5


def test_load_refuses_other_files(tmp_path) -> None:
    """Arbitrary pickles are not unpickled (weights only), and other dicts or objects are not code models."""
    from pathlib import PurePosixPath

    torch.save(PurePosixPath("/x"), tmp_path / "path.pt")
    with pytest.raises(UserError, match=r"path\.pt is not a readable code model \(UnpicklingError\)"):
        CodeModel.load(tmp_path / "path.pt")
    torch.save({"kind": "alexnet-features"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other\.pt is not an alexnet code model"):
        CodeModel.load(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match=r"list\.pt is not an alexnet code model"):
        CodeModel.load(tmp_path / "list.pt")


# --------------------------------------------------------------------------- training


@dataclass
class _Training:
    """What the auto-encoder saw while training: raw input rows of each step, its targets and losses."""

    batches: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[Any] = field(default_factory=list)


def _record_training(monkeypatch) -> _Training:
    """Spy on BinaryAutoencoder.forward (training mode), the MSE loss and Adam's learning rate."""
    rec = _Training()
    forward, mse = BinaryAutoencoder.forward, torch.nn.functional.mse_loss

    def spy_forward(self, x):
        if self.training:
            rec.batches.append(x.detach().numpy().copy())
        return forward(self, x)

    def spy_mse(input, target, *args, **kwargs):
        loss = mse(input, target, *args, **kwargs)
        rec.targets.append(target.detach().numpy().copy())
        rec.losses.append(float(loss.detach()))
        return loss

    class SpyAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs) -> None:
            rec.lrs.append(kwargs.get("lr"))
            super().__init__(params, **kwargs)

    monkeypatch.setattr(BinaryAutoencoder, "forward", spy_forward)
    monkeypatch.setattr(torch.nn.functional, "mse_loss", spy_mse)
    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    return rec


def test_train_codes_steps_targets_and_history(monkeypatch) -> None:
    """Each epoch visits every row once in batches of batch_size; the target is the standardised input
    (column mean (2, 1.8), sample std (sqrt 2.5, sqrt 3.2)); history is each epoch's per-row mean loss."""
    rec = _record_training(monkeypatch)
    x = np.array([[0, 1], [1, 1], [2, 1], [3, 1], [4, 5]], np.float64)  # column 0 names the row
    t0 = time.perf_counter()
    model = train_codes(x, 8, hidden=6, epochs=2, batch_size=2, lr=0.01, noise=0.5, seed=0)
    wall = time.perf_counter() - t0
    assert [len(b) for b in rec.batches] == [2, 2, 1, 2, 2, 1]
    for epoch in (rec.batches[:3], rec.batches[3:]):
        assert sorted(np.concatenate(epoch)[:, 0].tolist()) == [0, 1, 2, 3, 4]
    mean, std = np.array([2.0, 1.8]), np.sqrt([2.5, 3.2])
    assert np.allclose(model.net.mean.numpy(), mean) and np.allclose(model.net.scale.numpy(), std)
    for batch, target in zip(rec.batches, rec.targets):
        assert np.allclose(target, (batch - mean) / std, atol=1e-6)
    l = rec.losses
    assert model.history == pytest.approx([(2 * l[0] + 2 * l[1] + l[2]) / 5, (2 * l[3] + 2 * l[4] + l[5]) / 5])
    assert rec.lrs == [0.01] and model.net.noise == 0.5 and model.net.hidden == 6
    assert 0 < model.seconds <= wall


def test_train_codes_defaults(monkeypatch) -> None:
    """Defaults: 512 hidden units, 10 epochs, batches of 256, Adam at 1e-3, noise 1, seed 0."""
    rec = _record_training(monkeypatch)
    x = np.random.default_rng(1).normal(size=(257, 3))
    model = train_codes(x, 8)
    assert model.net.hidden == 512 and model.net.noise == 1.0 and len(model.history) == 10
    assert [len(b) for b in rec.batches] == [256, 1] * 10 and rec.lrs == [1e-3]
    small = x[:6]
    assert train_codes(small, 8, hidden=4, epochs=2).history == train_codes(small, 8, hidden=4, epochs=2,
                                                                           seed=0).history


def test_train_codes_floor_on_the_scale() -> None:
    """A constant column is scaled by 1e-3 of the global std (+1e-12), not divided by zero: on
    [[5, 0], [5, 4]] the global sample std is sqrt(17/3) and column 1's is sqrt(8); two vectors suffice."""
    model = train_codes(np.array([[5.0, 0.0], [5.0, 4.0]]), 8, hidden=4, epochs=1)
    assert model.net.scale.numpy() == pytest.approx([1e-3 * np.sqrt(17 / 3), np.sqrt(8)], rel=1e-5)
    flat = train_codes(np.full((2, 3), 3.0), 8, hidden=4, epochs=2)
    assert (flat.net.scale > 0).all() and np.isfinite(flat.history).all()


def test_train_codes_on_a_random_subset(monkeypatch) -> None:
    """max_rows trains on that many distinct rows, the same ones for the same seed."""
    rec = _record_training(monkeypatch)
    x = np.stack([np.arange(20.0), np.arange(20.0) % 3], 1)
    seen = []
    for _ in range(2):
        rec.batches.clear()
        train_codes(x, 8, hidden=4, epochs=1, max_rows=15, seed=2)
        seen.append(np.concatenate(rec.batches)[:, 0].tolist())
    assert len(seen[0]) == 15 and len(set(seen[0])) == 15 and set(seen[0]) <= set(range(20))
    assert sorted(seen[0]) == sorted(seen[1])


def test_train_codes_shuffles_with_its_own_generator(monkeypatch) -> None:
    """The order rows are visited in depends on the seed only, not on how many weights the network drew."""
    rec = _record_training(monkeypatch)
    x = np.stack([np.arange(12.0), np.arange(12.0) % 4], 1)
    orders = []
    for hidden in (4, 32):
        rec.batches.clear()
        train_codes(x, 8, hidden=hidden, epochs=1, batch_size=3, seed=1)
        orders.append(np.concatenate(rec.batches)[:, 0].tolist())
    assert orders[0] == orders[1]


def test_train_codes_lr_zero_keeps_the_initial_weights() -> None:
    """The lr given reaches Adam: with lr=0 the weights stay those torch.manual_seed(seed) drew."""
    model = train_codes(np.random.default_rng(0).normal(size=(6, 3)), 8, hidden=4, epochs=2, lr=0.0, seed=4)
    torch.manual_seed(4)
    fresh = BinaryAutoencoder(3, 8, 4)
    assert torch.equal(model.net.encoder[0].weight, fresh.encoder[0].weight)


def test_train_codes_bad_input() -> None:
    """Bits must be a positive multiple of 8 (the error names the bits parameter); two vectors at least."""
    x = np.zeros((4, 3))
    for bad in (0, 12):
        with pytest.raises(UserError, match="positive multiple of 8") as err:
            train_codes(x, bad)
        assert err.value.key == "bits"
    with pytest.raises(UserError, match="^codes: need at least two vectors to train an auto-encoder$"):
        train_codes(x[:1], 8)


# --------------------------------------------------------------------------- Hamming search


def test_hamming_knn_on_hand_written_codes() -> None:
    """Distances counted by hand; ties go to the lower index; k may be the whole database."""
    db = np.array([[0b00000000], [0b00000111], [0b11111111], [0b00000001]], np.uint8)
    q = np.array([[0b00000011], [0b11111111], [0b00000000]], np.uint8)
    d, i = hamming_knn(db, q[:1], 4)
    assert d.tolist() == [[1, 1, 2, 6]] and i.tolist() == [[1, 3, 0, 2]]
    assert np.issubdtype(d.dtype, np.integer) and i.dtype == np.int64
    d, i = hamming_knn(db, q[:1], 3)  # one fewer than the database
    assert d.tolist() == [[1, 1, 2]] and i.tolist() == [[1, 3, 0]]
    # budget=1: one query at a time
    d, i = hamming_knn(db, q, 2, budget=1)
    assert d.tolist() == [[1, 1], [0, 5], [0, 1]] and i.tolist() == [[1, 3], [2, 1], [0, 3]]
    assert np.issubdtype(d.dtype, np.integer)


def test_hamming_knn_nine_byte_codes() -> None:
    """72-bit codes (not a whole number of 64-bit words) are counted byte by byte."""
    db = np.zeros((3, 9), np.uint8)
    db[1, 8] = 1
    db[2] = 255
    d, i = hamming_knn(db, np.zeros((1, 9), np.uint8), 3)
    assert d.tolist() == [[0, 1, 72]] and i.tolist() == [[0, 1, 2]]


def test_hamming_knn_reads_signed_bytes_as_bit_patterns() -> None:
    """Codes handed over as int8 are read as their bytes: -1 is eight set bits."""
    d, i = hamming_knn(np.array([[-1], [0]], np.int8), np.zeros((1, 1), np.uint8), 2)
    assert d.tolist() == [[0, 8]] and i.tolist() == [[1, 0]]
    d, i = hamming_knn(np.array([[255], [0]], np.uint8), np.array([[-1]], np.int8), 2)
    assert d.tolist() == [[0, 8]] and i.tolist() == [[0, 1]]


def test_hamming_knn_code_length_mismatch() -> None:
    with pytest.raises(UserError, match="query codes have 16 bits but the database's have 24"):
        hamming_knn(np.zeros((4, 3), np.uint8), np.zeros((1, 2), np.uint8), 1)


# --------------------------------------------------------------------------- tables and saved results


def _two_results() -> list[MethodResult]:
    return [MethodResult("features, exact L2", 0.5, 1234.4, 16, 0.0, ""),
            MethodResult("features, 8-bit codes", 0.125, 7.0, 1, 12.6, "n")]


def test_method_rows_and_table() -> None:
    """A result's Markdown row (percent to 0.1, thousands separators, '-' for no training) and the table."""
    rows = ["| features, exact L2 | 50.0% | 1,234 | 16 | - |  |",
            "| features, 8-bit codes | 12.5% | 7 | 1 | 13 s | n |"]
    assert [r.row() for r in _two_results()] == rows
    head = ["| method | precision@5 | queries/s | bytes/item | training | notes |", "|---|---|---|---|---|---|"]
    assert table(_two_results(), 5) == "\n".join(head + rows)


def test_save_results_writes_json_and_markdown(tmp_path) -> None:
    """retrieval.json: the metadata and each result's fields, indented by 2; retrieval.md: the table.
    The folder (and its parents) is made, and saving again overwrites."""
    out = tmp_path / "a" / "b"
    meta = {"k": 5, "database": "db"}
    for _ in range(2):
        save_results(_two_results(), out, meta)
    text = (out / "retrieval.json").read_text()
    assert text.splitlines()[:3] == ["{", '  "k": 5,', '  "database": "db",']
    assert json.loads(text) == {"k": 5, "database": "db", "results": [
        {"method": "features, exact L2", "precision": 0.5, "queries_per_s": 1234.4, "bytes_per_item": 16,
         "train_seconds": 0.0, "notes": ""},
        {"method": "features, 8-bit codes", "precision": 0.125, "queries_per_s": 7.0, "bytes_per_item": 1,
         "train_seconds": 12.6, "notes": "n"}]}
    assert (out / "retrieval.md").read_text() == (
        "| method | precision@5 | queries/s | bytes/item | training | notes |\n|---|---|---|---|---|---|\n"
        "| features, exact L2 | 50.0% | 1,234 | 16 | - |  |\n| features, 8-bit codes | 12.5% | 7 | 1 | 13 s | n |\n")


# --------------------------------------------------------------------------- comparisons


def test_compare_passes_training_rows_and_seed(monkeypatch) -> None:
    """settings.train_rows and settings.seed reach the auto-encoder's training."""
    rec = _record_training(monkeypatch)
    x = np.stack([np.arange(8.0), np.arange(8.0) % 2], 1)
    labels = np.arange(8) % 2
    orders = []
    for seed in (0, 5):
        rec.batches.clear()
        compare({"v": x}, {"v": x[:2]}, labels, labels[:2], k=1, code_on=("v",),
                settings=CodeSettings(bits=(8,), epochs=1, hidden=4, train_rows=3, seed=seed))
        orders.append(np.concatenate(rec.batches)[:, 0].tolist())
    assert [len(o) for o in orders] == [3, 3]
    assert orders[0] != orders[1]


def _images(centres: list[int], border: int = 30) -> np.ndarray:
    """uint8 (n, 4, 4, 3) images: a constant 2x2 centre patch of each value, a constant border."""
    out = np.full((len(centres), 4, 4, 3), border, np.uint8)
    out[:, 1:3, 1:3] = np.asarray(centres, np.uint8)[:, None, None, None]
    return out


def _feature_folder(path: Path, features: np.ndarray, labels: list[int], index: list[int], *, store: Path,
                    split: str, sha: str = "ab" * 32) -> Path:
    """A finished feature folder written by hand (as ``alexnet features`` lays it out), crop 2."""
    path.mkdir(parents=True)
    np.save(path / "features.npy", np.asarray(features, np.float32))
    np.save(path / "index.npy", np.asarray(index, np.int64))
    np.save(path / "labels.npy", np.asarray(labels, np.int64))
    meta = {"kind": "alexnet-features", "format": 1, "checkpoint": "/runs/a/checkpoints/last.pt",
            "checkpoint_sha256": sha, "model_spec": {"input_size": 2}, "store": str(store), "split": split,
            "count": len(features), "dim": int(np.shape(features)[1]), "complete": True}
    (path / "features.json").write_text(json.dumps(meta))
    (path / "progress.json").write_text(json.dumps({"rows_done": len(features)}))
    return path


def _line(xs: list[float]) -> np.ndarray:
    return np.stack([np.asarray(xs, np.float64), np.zeros(len(xs))], 1)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Database (6 rows, stored in reverse order in the store's train split) and queries (3 rows, val split).

    features on a line, k=2: q 0.4 (label 0) -> rows 0, 1 (labels 0, 0): 2 hits; q 11.2 (1) -> rows 4, 5 (1, 0):
    1 hit; q 1.8 (0) -> rows 2, 1 (1, 0): 1 hit; precision 4/6.
    pixel centres: q 190 (0) -> 200, 150 = rows 3, 4 (1, 1): 0; q 10 (1) -> 0, 50 = rows 1, 2 (0, 1): 1;
    q 240 (0) -> 250, 200 = rows 5, 3 (0, 1): 1; precision 2/6.
    """
    from alexnet.data.shards import write_store

    db_labels, q_labels = [0, 0, 1, 1, 1, 0], [0, 1, 0]
    db_centres = [100, 0, 50, 200, 150, 250]
    store = write_store(tmp_path / "store", {"train": (_images(db_centres[::-1]), np.array(db_labels[::-1])),
                                             "val": (_images([190, 10, 240]), np.array(q_labels))},
                        [("n0", "zero"), ("n1", "one")]).path
    db = _feature_folder(tmp_path / "db", _line([0, 1, 2, 10, 11, 12]), db_labels, [5, 4, 3, 2, 1, 0],
                         store=store, split="train")
    qs = _feature_folder(tmp_path / "qs", _line([0.4, 11.2, 1.8]), q_labels, [0, 1, 2], store=store, split="val")
    return db, qs, store


def test_compare_feature_sets_by_hand(folders, monkeypatch) -> None:
    """fc7 and pixel (centre 2x2 patch, 12-d) exact search, codes of both; precision, sizes, timings and
    the notes as computed by hand; progress gets each row as it is done; the metadata."""
    db, qs, store = folders
    rec = _record_training(monkeypatch)
    said: list[str] = []
    settings = CodeSettings(bits=(8,), epochs=3, hidden=4, engine="faiss", seed=0)
    t0 = time.perf_counter()
    results, meta = compare_feature_sets(db, qs, k=2, settings=settings, pixel_codes=True, progress=said.append)
    wall = time.perf_counter() - t0
    assert [r.method for r in results] == ["features, exact L2 (2-d float32, faiss)",
                                           "pixels, exact L2 (12-d float32, faiss)",
                                           "features, 8-bit codes, Hamming", "pixels, 8-bit codes, Hamming"]
    assert [r.bytes_per_item for r in results] == [8, 48, 1, 1]
    assert results[0].precision == pytest.approx(4 / 6) and results[1].precision == pytest.approx(2 / 6)
    for r in results[2:]:
        assert 0 <= r.precision <= 1 and r.precision * 6 == pytest.approx(round(r.precision * 6))
        assert 0 < r.train_seconds <= wall
    assert all(r.queries_per_s >= 3 / wall for r in results)
    assert results[0].train_seconds == results[1].train_seconds == 0 and results[0].notes == results[1].notes == ""
    # two trainings of 3 epochs, one batch of the 6 rows each: the final MSE is the last batch's loss
    assert [len(b) for b in rec.batches] == [6] * 6
    for r, loss in zip(results[2:], (rec.losses[2], rec.losses[5])):
        m = re.fullmatch(r"encoding ([\d,]+) queries/s; final MSE (\d+\.\d{3})", r.notes)
        assert m is not None, r.notes
        assert float(m.group(1).replace(",", "")) >= 3 / wall and m.group(2) == f"{loss:.3f}"
    assert said == [r.row() for r in results]
    assert meta == {"database": str(db), "queries": str(qs), "database_items": 6, "queries_used": 3, "k": 2,
                    "checkpoint": "/runs/a/checkpoints/last.pt", "checkpoint_sha256": "ab" * 32,
                    "store": str(store), "epochs": 3, "hidden": 4, "seed": 0}


def _names(results: list[MethodResult]) -> list[str]:
    """Method names without the parenthesised details."""
    return [r.method.split(" (")[0] for r in results]


def test_compare_feature_sets_defaults_and_switches(folders) -> None:
    """By default: features, pixels and codes of the features; pixels=False leaves pixels out; pixel codes
    alone still read the pixels."""
    db, qs, _ = folders
    settings = CodeSettings(bits=(8,), epochs=1, hidden=4)
    results, _ = compare_feature_sets(db, qs, k=2, settings=settings)
    assert _names(results) == ["features, exact L2", "pixels, exact L2", "features, 8-bit codes, Hamming"]
    assert results[1].precision == pytest.approx(2 / 6)
    results, _ = compare_feature_sets(db, qs, k=2, settings=settings, pixels=False)
    assert _names(results) == ["features, exact L2", "features, 8-bit codes, Hamming"]
    results, _ = compare_feature_sets(db, qs, k=2, settings=settings, pixels=False, pixel_codes=True)
    assert _names(results) == ["features, exact L2", "pixels, exact L2", "features, 8-bit codes, Hamming",
                              "pixels, 8-bit codes, Hamming"]


def test_compare_feature_sets_needs_labels_on_both_sides(tmp_path) -> None:
    """An unlabelled (-1) image among the database or among the queries is refused; label 0 is a label."""
    settings = CodeSettings(bits=(8,), epochs=1, hidden=4)
    x = _line([0, 1, 2, 3])
    ok = _feature_folder(tmp_path / "ok", x, [0, 1, 0, 1], [0, 1, 2, 3], store=tmp_path, split="train")
    bad = _feature_folder(tmp_path / "bad", x, [0, -1, 0, 1], [0, 1, 2, 3], store=tmp_path, split="train")
    for db, qs in ((bad, ok), (ok, bad)):
        with pytest.raises(UserError, match="^precision@k needs labels: the database or the queries include "
                                            "unlabelled images$"):
            compare_feature_sets(db, qs, k=1, settings=settings, pixels=False)
    results, _ = compare_feature_sets(ok, ok, k=1, settings=settings, pixels=False)
    assert results[0].precision == 1.0
    other = _feature_folder(tmp_path / "other", x, [0, 1, 0, 1], [0, 1, 2, 3], store=tmp_path, split="train",
                            sha="cd" * 32)
    with pytest.raises(UserError, match="different checkpoints"):
        compare_feature_sets(ok, other, k=1, settings=settings, pixels=False)


def test_compare_feature_sets_samples_distinct_queries(tmp_path) -> None:
    """max_queries=5 of 6 queries: a seeded random sample of distinct rows, not always the first ones.

    Query i (at 100 i, label 0) has 5 database rows at distances 1..5, the first i of them labelled 0, so i of
    its 5 neighbours are hits; leaving out query j gives precision@5 (15 - j) / 25.
    """
    settings = CodeSettings(bits=(8,), epochs=1, hidden=4)
    db_x = [100 * i + off for i in range(6) for off in range(1, 6)]
    db_labels = [0 if off < i else 1 for i in range(6) for off in range(5)]
    db = _feature_folder(tmp_path / "db", _line(db_x), db_labels, list(range(30)), store=tmp_path, split="train")
    qs = _feature_folder(tmp_path / "qs", _line([100 * i for i in range(6)]), [0] * 6, list(range(6)),
                         store=tmp_path, split="val")
    left_out = []
    for seed in range(5):
        runs = [compare_feature_sets(db, qs, k=5, settings=CodeSettings(bits=(8,), epochs=1, hidden=4, seed=seed),
                                     pixels=False, max_queries=5) for _ in range(2)]
        (first, meta), (second, _) = runs
        assert meta["queries_used"] == 5
        assert first[0].precision == second[0].precision  # the same seed samples the same queries
        j = 15 - 25 * first[0].precision
        assert j == pytest.approx(round(j)) and 0 <= round(j) <= 5, first[0].precision
        left_out.append(round(j))
    assert len(set(left_out)) > 1
    results, meta = compare_feature_sets(db, qs, k=5, settings=settings, pixels=False, max_queries=50)
    assert meta["queries_used"] == 6 and results[0].precision == pytest.approx(15 / 30)


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

"""§4.1 / §6 evaluation: ten patches, known errors from a stub, Table 2 output, torchrun sharding, bad input."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.data.batches import Augmentation, EvalBatches
from alexnet.errors import UserError
from alexnet.inference.evaluate import EvalResult, evaluate_checkpoint, evaluate_model
from alexnet.inference.scoring import topk_error_rates
from alexnet.paper import ARCH, RESULTS
from alexnet.data.shards import write_store

from helpers import FixedLogits, make_checkpoint, make_store

def test_topk_error_rates_known_values() -> None:
    probs = np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05],   # label 0: top-1
                      [0.5, 0.2, 0.1, 0.1, 0.06, 0.04],   # label 4: 5th, top-5 hit
                      [0.5, 0.2, 0.1, 0.1, 0.06, 0.04]])  # label 5: 6th, miss
    e1, e5 = topk_error_rates(probs, np.array([0, 4, 5]))
    assert e1 == pytest.approx(2 / 3) and e5 == pytest.approx(1 / 3)


def test_stub_model_gives_known_errors_in_both_modes(tmp_path: Path) -> None:
    classes = 7
    store = make_store(tmp_path / "s", val=20, classes=classes, size=20)
    labels = store.split("val").labels
    n = len(labels)
    logits = torch.zeros(n, classes)
    for i, y in enumerate(labels.tolist()):  # rank of the label: 1 for i < 8, 4 for 8 <= i < 14, 7 after
        order = [(y + s) % classes for s in range(classes)]
        rank = 0 if i < 8 else (3 if i < 14 else 6)
        order.insert(rank, order.pop(0))
        for r, c in enumerate(order):
            logits[i, c] = float(classes - r)
    model = FixedLogits(logits)
    augment = Augmentation.for_evaluation(16, store.stats().mean_image, "image", "paper")
    result = evaluate_model(model, store, split="val", augment=augment, batch_size=n, progress=False)
    errs = result.errors()
    for mode in ("centre", "ten"):
        assert errs[f"{mode}_top1_error"] == pytest.approx(12 / 20)
        assert errs[f"{mode}_top5_error"] == pytest.approx(6 / 20)
        np.testing.assert_allclose(result.probs[mode], logits.softmax(1).numpy(), rtol=1e-6)
    per = result.per_class("ten")
    assert sum(r["images"] for r in per) == n
    assert {"wnid", "name", "top1_error", "top5_error"} <= set(per[0])


class TopLeftPixelLogits(torch.nn.Module):
    """A stub whose logits are (row / 4, column / 4, blue / 10) of each patch's top-left pixel: ten different views."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 0, 0] / 4, x[:, 1, 0, 0] / 4, x[:, 2, 0, 0] / 10], dim=1)


def test_ten_patches_average_the_softmax_outputs_by_hand(tmp_path: Path) -> None:
    """§4.1: "averaging the predictions made by the network's softmax layer on the ten patches", not the logits."""
    import math

    size, crop = 20, 12
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack([np.stack([yy, xx, np.full_like(yy, 7 * i)], -1) for i in range(3)]).astype(np.uint8)
    classes = [("n00000000", "a"), ("n00000001", "b"), ("n00000002", "c")]
    store = write_store(tmp_path / "coords", {"train": (images, np.zeros(3, np.int64)),
                                              "val": (images, np.arange(3))}, classes)
    stats = store.stats()
    aug = Augmentation(crop, np.zeros_like(stats.mean_image), stats.eigenvalues, stats.eigenvectors,
                       "image", False, 0.0, "paper")
    result = evaluate_model(TopLeftPixelLogits(), store, split="val", augment=aug, batch_size=3, progress=False)
    # the top-left pixels of the ten views: corners (0,0) (0,8) (8,0) (8,8), centre (4,4); mirrors start 11 right
    views = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    views += [(t, l + crop - 1) for t, l in views]
    for b in range(3):
        probs = [0.0, 0.0, 0.0]
        for t, l in views:
            z = [t / 4, l / 4, 7 * b / 10]
            total = sum(math.exp(v) for v in z)
            probs = [p + math.exp(v) / total / 10 for p, v in zip(probs, z)]
        np.testing.assert_allclose(result.probs["ten"][b], probs, rtol=1e-5)
        mean_logits = [sum(t for t, _ in views) / 40, sum(l for _, l in views) / 40, 7 * b / 10]
        softmax_of_mean = [math.exp(v) / sum(math.exp(u) for u in mean_logits) for v in mean_logits]
        assert max(abs(p - q) for p, q in zip(probs, softmax_of_mean)) > 0.02  # the two rules differ here
    centre = [4 / 4, 4 / 4]
    for b in range(3):
        z = centre + [7 * b / 10]
        np.testing.assert_allclose(result.probs["centre"][b], [math.exp(v) / sum(math.exp(u) for u in z) for v in z],
                                   rtol=1e-5)


def test_ten_patches_end_to_end_from_the_store(tmp_path: Path) -> None:
    """Store -> EvalBatches -> eval_transform: the four corners, the centre, and their mirrors."""
    size, crop = 20, 12
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack([np.stack([yy, xx, np.full_like(yy, 7 * i)], -1) for i in range(3)]).astype(np.uint8)
    store = write_store(tmp_path / "coords", {"train": (images, np.zeros(3, np.int64)),
                                              "val": (images, np.zeros(3, np.int64))},
                        [("n00000000", "a"), ("n00000001", "b")])
    stats = store.stats()
    aug = Augmentation(crop, np.zeros_like(stats.mean_image), stats.eigenvalues, stats.eigenvectors,
                       "image", False, 0.0, "paper")
    x, _, idx = EvalBatches(store.split("val"), batch_size=3, augment=aug, patches="ten")[0]
    assert x.shape == (3, 10, 3, crop, crop) and idx.tolist() == [0, 1, 2]
    last, mid = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]
    for b in range(3):
        assert torch.all(x[b, :, 2] == 7 * b)
        for k, (top, left) in enumerate(corners):
            view = x[b, k]
            assert view[0, 0, 0] == top and view[1, 0, 0] == left  # top-left pixel's coordinates
            assert view[0, -1, 0] == top + crop - 1 and view[1, 0, -1] == left + crop - 1
            assert torch.equal(x[b, k + 5], view.flip(-1))  # the mirror
            assert x[b, k + 5][1, 0, 0] == left + crop - 1


def test_eval_writes_table2_json_and_probabilities(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "s", val=13)
    run = make_checkpoint(tmp_path / "run", store)
    assert main(["eval", str(run), "--data", str(store.path), "--patches", "both", "--quiet", "--per-class"]) == 0
    printed = capsys.readouterr().out
    assert "| Model (13 images, 4 classes) | Top-1 (val) | Top-5 (val) |" in printed
    assert "ten patches (§4.1)" in printed and "| class | wnid |" in printed
    out = run / "eval"
    summary = json.loads((out / "eval.json").read_text())
    assert summary["images"] == 13 and summary["num_classes"] == 4 and len(summary["classes"]) == 4
    assert len(summary["per_class"]["ten"]) == 4 and "centre_top5_error" in summary
    for mode in ("centre", "ten"):
        p = np.load(out / f"probs_{mode}.npy")
        assert p.shape == (13, 4) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(np.load(out / "labels.npy"), store.split("val").labels)
    assert len((out / "predictions.tsv").read_text().splitlines()) == 14
    assert "Per class" in (out / "eval.md").read_text()


def _eval_worker(rank: int, world: int, port: int, run: str, store: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        evaluate_checkpoint(run, store, out=out, batch_size=8, device="cpu", progress=False)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_count_every_image_once(tmp_path: Path, monkeypatch) -> None:
    """torchrun-style: 2 gloo processes on an odd split (41 images) give the one-process probabilities."""
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    store = make_store(tmp_path / "s", val=41)
    run = make_checkpoint(tmp_path / "run", store)
    single = evaluate_checkpoint(run, store.path, out=tmp_path / "one", batch_size=8, device="cpu", progress=False)
    torch.multiprocessing.spawn(_eval_worker, args=(2, _free_port(), str(run), str(store.path), str(tmp_path / "two")),
                                nprocs=2, join=True)
    for mode in ("centre", "ten"):
        two = np.load(tmp_path / "two" / f"probs_{mode}.npy")
        assert two.shape == (41, 4)
        np.testing.assert_allclose(two.sum(1), 1, atol=1e-5)  # no image twice, none missing
        np.testing.assert_allclose(two, single.probs[mode], atol=1e-6)
    assert json.loads((tmp_path / "two" / "eval.json").read_text())["images"] == 41


def test_unknown_classes_and_other_architectures_are_user_errors(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "s", classes=4)
    run = make_checkpoint(tmp_path / "run", store)
    other = write_store(tmp_path / "other", {"val": (np.zeros((2, 20, 20, 3), np.uint8), np.array([0, 1]))},
                        [("n00000000", "class 0"), ("n09999999", "stranger")] + [(f"n0000000{i}", "x") for i in (2, 3)])
    with pytest.raises(UserError, match="classes the checkpoint does not know: n09999999"):
        evaluate_checkpoint(run, other.path, progress=False)
    five = make_store(tmp_path / "five", classes=5)
    assert main(["eval", str(run), "--data", str(five.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "n00000004" in err and "Traceback" not in err
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model"]["conv3.weight"] = torch.zeros(8, 8, 3, 3)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="layer conv3 disagrees"):
        evaluate_checkpoint(tmp_path / "bad.pt", store.path, progress=False)


def test_eval_result_table_has_the_papers_rows_for_1000_classes() -> None:
    labels = np.arange(4)
    probs = np.full((4, ARCH.num_classes), 1 / ARCH.num_classes, np.float32)
    table = EvalResult("val", labels, {"ten": probs}).table()
    ref = RESULTS.ilsvrc2012_val_1cnn
    assert "Top-1 (val)" in table and f"*{ref.top1:.1f}%*" in table and f"*{ref.top5:.1f}%*" in table

"""§6 ensembles: averaged probabilities, a side-by-side table, and mismatched members named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexnet.cli import main
from alexnet.inference.ensemble import ensemble
from alexnet.errors import UserError
from alexnet.inference.scoring import topk_error_rates

from helpers import make_store
from helpers import make_checkpoint

CLASSES = [(f"n{i:08d}", f"class {i}") for i in range(6)]


def eval_folder(path: Path, probs: np.ndarray, labels: np.ndarray, classes=CLASSES, mode: str = "ten") -> Path:
    """What `alexnet eval` writes, for a stub member with known probabilities."""
    path.mkdir(parents=True)
    np.save(path / f"probs_{mode}.npy", probs.astype(np.float32))
    np.save(path / "labels.npy", labels)
    (path / "eval.json").write_text(json.dumps({"split": "val", "classes": [list(c) for c in classes]}))
    return path


def stub_probs(n: int, c: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, c)) * 3
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_two_stubs_average_to_their_mean(tmp_path: Path, capsys) -> None:
    labels = np.random.default_rng(9).integers(0, 6, 30)
    a, b = stub_probs(30, 6, 1), stub_probs(30, 6, 2)
    fa, fb = eval_folder(tmp_path / "a", a, labels), eval_folder(tmp_path / "b", b, labels)
    result = ensemble([fa, fb / "probs_ten.npy"], out=tmp_path / "ens")
    np.testing.assert_allclose(result.probs, (a + b) / 2, atol=1e-6)
    rows = result.rows()
    assert [r[0] for r in rows] == [f"CNN 1: {fa}", f"CNN 2: {fb / 'probs_ten.npy'}", "2 CNNs, predictions averaged (§6)"]
    assert rows[0][1:] == pytest.approx(topk_error_rates(a, labels), abs=1e-6)
    assert rows[2][1:] == pytest.approx(topk_error_rates((a + b) / 2, labels), abs=1e-6)
    saved = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert saved["ensemble"]["size"] == 2 and len(saved["members"]) == 2
    assert np.allclose(np.load(tmp_path / "ens" / "probs_ensemble.npy"), (a + b) / 2, atol=1e-6)
    assert main(["ensemble", str(fa), str(fb), "--out", str(tmp_path / "ens2")]) == 0
    out = capsys.readouterr().out
    assert "| Model (30 images, 6 classes) | Top-1 (val) | Top-5 (val) |" in out and "2 CNNs" in out


@pytest.mark.parametrize("problem, match", [
    ("count", "has 29 images but"),
    ("labels", "has other labels than"),
    ("classes", "has 5 classes but"),
    ("table", "another class table"),
    ("logits", "not probability vectors"),
])
def test_mismatched_members_are_named(tmp_path: Path, problem: str, match: str, capsys) -> None:
    labels = np.random.default_rng(0).integers(0, 5, 30)
    good = eval_folder(tmp_path / "good", stub_probs(30, 6, 1), labels)
    probs, lab, classes = stub_probs(30, 6, 2), labels.copy(), CLASSES
    if problem == "count":
        probs, lab = probs[:29], lab[:29]
    elif problem == "labels":
        lab[3] = (lab[3] + 1) % 5
    elif problem == "classes":
        probs, classes = stub_probs(30, 5, 2), CLASSES[:5]
    elif problem == "table":
        classes = list(reversed(CLASSES))
    else:
        probs = np.log(probs)
    bad = eval_folder(tmp_path / "bad", probs, lab, classes)
    with pytest.raises(UserError, match=match) as err:
        ensemble([good, bad])
    assert str(bad / "probs_ten.npy") in str(err.value)
    assert main(["ensemble", str(good), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_runs_are_evaluated_and_need_data(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", val=11)
    r1 = make_checkpoint(tmp_path / "r1", store, seed=1)
    r2 = make_checkpoint(tmp_path / "r2", store, seed=2)
    with pytest.raises(UserError, match="name the store to evaluate it on"):
        ensemble([r1, r2])
    result = ensemble([r1, r2 / "checkpoints" / "last.pt"], data=store.path, patches="centre", out=tmp_path / "e")
    assert result.probs.shape == (11, 4)
    m1 = np.load(tmp_path / "e" / "members" / "1" / "probs_centre.npy")
    m2 = np.load(tmp_path / "e" / "members" / "2" / "probs_centre.npy")
    np.testing.assert_allclose(result.probs, (m1 + m2) / 2, atol=1e-6)
    with pytest.raises(UserError, match="neither a probability file"):
        ensemble([tmp_path / "s"])


def test_members_evaluated_on_other_stores_are_refused(tmp_path: Path, capsys) -> None:
    """Two stores with the same image count and labels but other images: eval.json records the store's
    manifest digest and image list, and the ensemble refuses to average probabilities of different images."""
    from helpers import quadrant_images
    from alexnet.data.shards import write_store
    from alexnet.inference.evaluate import evaluate_checkpoint

    classes = [(f"n{i:08d}", f"class {i}") for i in range(4)]
    rng = np.random.default_rng(0)
    train = quadrant_images(32, 20, 4, rng)
    images, labels = quadrant_images(16, 20, 4, rng)
    a = write_store(tmp_path / "a", {"train": train, "val": (images, labels)}, classes)
    b = write_store(tmp_path / "b", {"train": train, "val": (images[::-1].copy(), labels)}, classes,
                    paths={"val": [f"other/{i}" for i in range(16)]})
    run = make_checkpoint(tmp_path / "run", a)
    ea = tmp_path / "ea"
    evaluate_checkpoint(run, a.path, out=ea, modes=("ten",), device="cpu", progress=False)
    eb = tmp_path / "eb"
    evaluate_checkpoint(run, b.path, out=eb, modes=("ten",), device="cpu", progress=False)
    with pytest.raises(UserError, match="were evaluated on different images"):
        ensemble([ea, eb])
    assert main(["ensemble", str(ea), str(eb), "--out", str(tmp_path / "ens")]) == 2
    assert "different images" in capsys.readouterr().err
    copy = tmp_path / "ea2"  # the same store, evaluated twice: fine
    evaluate_checkpoint(run, a.path, out=copy, modes=("ten",), device="cpu", progress=False)
    assert ensemble([ea, copy]).probs.shape == (16, 4)

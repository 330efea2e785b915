"""§6 ensembles: averaged probabilities, a side-by-side table, and mismatched members named."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from alexnet.cli import main
from alexnet.inference.ensemble import Member, check_members, ensemble, load_member
from alexnet.errors import UserError
from alexnet.inference.scoring import topk_error_rates

from helpers import make_store
from helpers import make_checkpoint

CLASSES = [(f"n{i:08d}", f"class {i}") for i in range(6)]


def eval_folder(path: Path, probs: np.ndarray, labels: np.ndarray, classes=CLASSES, mode: str = "ten",
                meta: dict[str, Any] | None = None) -> Path:
    """What `alexnet eval` writes, for a stub member with known probabilities (``meta``: more eval.json keys)."""
    path.mkdir(parents=True)
    np.save(path / f"probs_{mode}.npy", probs.astype(np.float32))
    np.save(path / "labels.npy", labels)
    (path / "eval.json").write_text(json.dumps({"split": "val", "classes": [list(c) for c in classes],
                                                **(meta or {})}))
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


# --- helpers for the tests below -------------------------------------------------------------------------------

#: Six distinct probabilities summing to 1: a row gives them, in this order, to the classes it lists.
RANKED = (0.40, 0.25, 0.15, 0.10, 0.06, 0.04)


def ranked_rows(*orders: tuple[int, ...]) -> np.ndarray:
    """(N, 6) float32 rows; row i gives RANKED[r] to class orders[i][r] (its r+1-th most likely class)."""
    probs = np.zeros((len(orders), len(RANKED)), np.float32)
    for i, order in enumerate(orders):
        probs[i, list(order)] = RANKED
    return probs


def bare_member(folder: Path, probs: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """A plain ``probs.npy`` (no eval.json), with ``labels.npy`` beside it when labels are given."""
    folder.mkdir(parents=True)
    np.save(folder / "probs.npy", probs.astype(np.float32))
    if labels is not None:
        np.save(folder / "labels.npy", labels)
    return folder / "probs.npy"


def labels_file(path: Path, labels: np.ndarray) -> Path:
    np.save(path, labels)
    return path


def member(source: str, probs: np.ndarray, labels: np.ndarray | None = None, classes=None, split: str | None = None,
           **origin: str) -> Member:
    """A member built in memory (as load_member would return it), for check_members."""
    return Member(source, source, probs, labels, classes, split, dict(origin))


def raised(members: list[Member], labels: np.ndarray | None = None) -> str:
    """The message of the UserError check_members raises for ``members``."""
    with pytest.raises(UserError) as err:
        check_members(members, labels)
    return str(err.value)


# --- what the ensemble computes and saves -----------------------------------------------------------------------

def test_saved_summary_holds_hand_computed_errors(tmp_path: Path) -> None:
    """ensemble.json, probs_ensemble.npy, labels.npy and ensemble.md of a two-member ensemble whose top-1/top-5
    errors are worked out by hand (A: 1/4, 1/4; B: 3/4, 2/4; their mean: 2/4, 1/4), saved into a folder whose
    parent does not exist yet; the class table is the first member's, the second having none."""
    labels = np.array([0, 1, 2, 3], np.int32)
    a = ranked_rows((0, 1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 0), (0, 1, 3, 4, 5, 2), (3, 0, 1, 2, 4, 5))
    b = ranked_rows((1, 2, 3, 4, 5, 0), (0, 1, 2, 3, 4, 5), (0, 1, 3, 4, 5, 2), (3, 0, 1, 2, 4, 5))
    fa = eval_folder(tmp_path / "a", a, labels)
    fb = bare_member(tmp_path / "b", b, labels)
    out = tmp_path / "runs" / "ens"
    result = ensemble([fa, fb], out=out)
    assert result.labels.dtype == np.int64 and result.labels.tolist() == [0, 1, 2, 3]
    assert result.probs.dtype == np.float32
    mean = np.array([[0.22, 0.325, 0.20, 0.125, 0.08, 0.05],  # image 0: label 0 second -> top-1 error only
                     [0.22, 0.325, 0.20, 0.125, 0.08, 0.05],  # image 1: label 1 first
                     [0.40, 0.25, 0.04, 0.15, 0.10, 0.06],  # image 2: label 2 last -> both errors
                     [0.25, 0.15, 0.10, 0.40, 0.06, 0.04]])  # image 3: label 3 first
    saved_probs = np.load(out / "probs_ensemble.npy")
    assert saved_probs.dtype == np.float32
    np.testing.assert_allclose(saved_probs, mean, atol=1e-6)
    saved_labels = np.load(out / "labels.npy")
    assert saved_labels.dtype == np.int64 and saved_labels.tolist() == [0, 1, 2, 3]
    text = (out / "ensemble.json").read_text()
    assert text.startswith('{\n  "split": "val",\n  "images": 4,')  # indented by two
    assert json.loads(text) == {
        "split": "val", "images": 4, "num_classes": 6,
        "members": [{"name": str(fa), "source": str(fa / "probs_ten.npy"), "top1_error": 0.25, "top5_error": 0.25},
                    {"name": str(fb), "source": str(fb), "top1_error": 0.75, "top5_error": 0.5}],
        "ensemble": {"size": 2, "top1_error": 0.5, "top5_error": 0.25},
        "classes": [list(c) for c in CLASSES],
    }
    assert (out / "ensemble.md").read_text().endswith("\n| 2 CNNs, predictions averaged (§6) | 50.0% | 25.0% |\n")


def test_one_member_is_its_own_ensemble(tmp_path: Path) -> None:
    """One member is enough (its probabilities are the average); none is a UserError."""
    labels = np.array([2, 0, 1])
    probs = ranked_rows((2, 0, 1, 3, 4, 5), (1, 0, 2, 3, 4, 5), (1, 2, 0, 3, 4, 5))
    result = ensemble([eval_folder(tmp_path / "a", probs, labels)])
    np.testing.assert_array_equal(result.probs, probs)
    assert [r[1:] for r in result.rows()] == [(1 / 3, 0.0), (1 / 3, 0.0)]  # image 1: label 0 second
    with pytest.raises(UserError, match="^ensemble: give at least one member$"):
        check_members([])


def test_a_labels_file_serves_members_without_labels(tmp_path: Path) -> None:
    """Bare probability files without labels.npy take their labels from ``labels=`` (an (N, 1) int32 file is
    read as N int64 labels); five images of six classes, so image and class counts differ."""
    labels = np.array([5, 0, 3, 1, 2])
    a, b = stub_probs(5, 6, 1), stub_probs(5, 6, 2)
    fa, fb = bare_member(tmp_path / "a", a), bare_member(tmp_path / "b", b)
    given = labels_file(tmp_path / "y.npy", labels.astype(np.int32).reshape(5, 1))
    result = ensemble([fa, fb], labels=given)
    assert result.labels.dtype == np.int64 and result.labels.shape == (5,)
    assert result.labels.tolist() == [5, 0, 3, 1, 2]
    np.testing.assert_allclose(result.probs, (a + b) / 2, atol=1e-6)
    assert load_member(fa).labels is None


def test_every_member_is_checked_against_the_labels_file(tmp_path: Path) -> None:
    """A member without labels does not end the check: the next member's labels.npy still has to match the
    labels file, and the first differing image is named."""
    labels = np.array([0, 1, 2, 3, 4])
    other = labels.copy()
    other[2] = 5
    fa = bare_member(tmp_path / "a", stub_probs(5, 6, 1))
    fb = eval_folder(tmp_path / "b", stub_probs(5, 6, 2), other)
    given = labels_file(tmp_path / "y.npy", labels)
    msg = f"{fb / 'probs_ten.npy'} has other labels than the labels file (image 2: 5 vs 2): "
    with pytest.raises(UserError, match=re.escape(msg)):
        ensemble([fa, fb], labels=given)


def test_labels_are_checked_against_the_first_labelled_member(tmp_path: Path) -> None:
    """Without a labels file the reference is the first member that has labels.npy, and it is named."""
    labels = np.array([0, 1, 2, 3, 4])
    other = labels.copy()
    other[3] = 1
    fa = bare_member(tmp_path / "a", stub_probs(5, 6, 1))
    fb = bare_member(tmp_path / "b", stub_probs(5, 6, 2), labels)
    fc = bare_member(tmp_path / "c", stub_probs(5, 6, 3), other)
    with pytest.raises(UserError, match=re.escape(f"{fc} has other labels than {fb} (image 3: 1 vs 3)")):
        ensemble([fa, fb, fc])


def test_members_and_labels_file_of_other_lengths_are_named(tmp_path: Path) -> None:
    """Four images (six classes) against a labels file of five: with and without the member's own labels."""
    given = labels_file(tmp_path / "y.npy", np.array([0, 1, 2, 3, 4]))
    bare = bare_member(tmp_path / "a", stub_probs(4, 6, 1))
    with pytest.raises(UserError, match=re.escape(f"{bare} has 4 images but the labels (the labels file) 5")):
        ensemble([bare], labels=given)
    labelled = bare_member(tmp_path / "b", stub_probs(4, 6, 1), np.array([0, 1, 2, 3]))
    with pytest.raises(UserError, match=re.escape(f"{labelled} has 4 labels but the labels file has 5")):
        ensemble([labelled], labels=given)


@pytest.mark.parametrize("bad", [6, -1])
def test_labels_outside_the_classes_are_refused(tmp_path: Path, bad: int) -> None:
    """Six classes: labels run over 0..5; 6 (one past the end) and -1 are refused."""
    given = labels_file(tmp_path / "y.npy", np.array([0, bad, 2]))
    fa = bare_member(tmp_path / "a", stub_probs(3, 6, 1))
    with pytest.raises(UserError, match=r"^labels \(the labels file\) hold class indices outside 0\.\.5$"):
        ensemble([fa], labels=given)


def test_members_without_images_pass_the_checks() -> None:
    """A member of zero images is consistent with zero labels (no max/min of an empty array is taken)."""
    m = member("a", np.zeros((0, 6), np.float32), np.zeros(0, np.int64))
    assert check_members([m]).shape == (0,)
    assert check_members([member("b", np.zeros((0, 6), np.float32))], np.zeros(0, np.int64)).shape == (0,)


def test_no_labels_anywhere_asks_for_a_labels_file(tmp_path: Path) -> None:
    fa = bare_member(tmp_path / "a", stub_probs(3, 6, 1))
    with pytest.raises(UserError, match="^labels: no ensemble member has labels.npy beside it; name a labels file$"):
        ensemble([fa])


# --- which arrays are probabilities -----------------------------------------------------------------------------

@pytest.mark.parametrize("probs, match", [
    (np.eye(4, dtype=np.int64)[[0, 1, 2]], r"^a: expected an \(images, classes\) array of probabilities, "
                                           r"got int64 \(3, 4\)$"),
    (np.full(4, 0.25, np.float32), r"got float32 \(4,\)$"),
    (np.ones((3, 1), np.float32), r"got float32 \(3, 1\)$"),
    (np.full((3, 3), 0.3, np.float32), "^a: rows are not probability vectors"),
    (np.array([[0.5, 0.5, 0.0], [np.nan, 0.5, 0.5]], np.float32), "^a: rows are not probability vectors"),
])
def test_arrays_that_are_not_probabilities_are_refused(probs: np.ndarray, match: str) -> None:
    """Integer arrays, 1-D arrays, one class, rows summing to 0.9, and a NaN are all refused."""
    with pytest.raises(UserError, match=match):
        check_members([member("a", probs, np.zeros(len(probs), np.int64))])


def test_two_classes_with_exact_zeros_are_probabilities() -> None:
    """Two classes suffice, and a probability may be exactly 0 (one-hot rows)."""
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    assert check_members([member("a", probs, np.array([0, 1, 1]))]).tolist() == [0, 1, 1]


# --- members that disagree --------------------------------------------------------------------------------------

def test_image_count_and_class_table_mismatches_name_the_numbers() -> None:
    """The first member's image count (30, not its 6 classes) and the first differing class's wnids are named."""
    labels = np.zeros(30, np.int64)
    good = member("good", stub_probs(30, 6, 1), labels, CLASSES)
    short = member("short", stub_probs(29, 6, 2), labels[:29], CLASSES)
    assert raised([good, short]) == "short has 29 images but good has 30: the members must cover the same images"
    renamed = list(CLASSES)
    renamed[2] = ("n00000099", "class 99")
    other = member("other", stub_probs(30, 6, 2), labels, renamed)
    assert raised([good, other]) == "other has another class table than good (class 2: n00000099 vs n00000002)"


@pytest.mark.parametrize("first, second, reason", [
    ({"images_sha256": "aaa"}, {"images_sha256": "bbb"}, "their image lists differ"),
    ({"store": "/d/a", "store_manifest_sha256": "1"}, {"store": "/d/b", "store_manifest_sha256": "2"},
     "stores /d/b and /d/a, whose manifests differ"),
    ({"store": "/d/a", "store_manifest_sha256": "1"}, {"store": "/d/a", "store_manifest_sha256": "2"},
     "stores /d/a and /d/a, whose manifests differ"),
    ({"store": "/d/a"}, {"store": "/d/b"}, "stores /d/b and /d/a"),
])
def test_members_of_other_images_name_the_reason(first: dict[str, str], second: dict[str, str], reason: str) -> None:
    """What eval.json records (image-list digest, store manifest digest, store path) tells images apart."""
    labels = np.zeros(3, np.int64)
    a = member("a", stub_probs(3, 6, 1), labels, **first)
    b = member("b", stub_probs(3, 6, 2), labels, **second)
    assert raised([a, b]) == (f"b and a were evaluated on different images ({reason}): the members must be "
                              f"evaluated on the same images of the same store")


def test_members_of_the_same_store_are_accepted(tmp_path: Path) -> None:
    """The same store spelt two ways, or a manifest digest recorded by one member only, is no disagreement."""
    (tmp_path / "s").mkdir()
    labels = np.zeros(3, np.int64)
    a = member("a", stub_probs(3, 6, 1), labels, store=str(tmp_path / "s"))
    b = member("b", stub_probs(3, 6, 2), labels, store=str(tmp_path / "s" / ".." / "s"))
    c = member("c", stub_probs(3, 6, 3), labels, store=str(tmp_path / "s"), store_manifest_sha256="1")
    assert check_members([a, b, c]).tolist() == [0, 0, 0]


def test_eval_json_records_where_the_images_came_from(tmp_path: Path) -> None:
    """A member's origin is the store, its manifest digest and the image-list digest from eval.json (no more)."""
    meta = {"store": "/d/s", "store_manifest_sha256": "m1", "images_sha256": "i1", "checkpoint": "/r/last.pt"}
    folder = eval_folder(tmp_path / "a", stub_probs(3, 6, 1), np.zeros(3, np.int64), meta=meta)
    m = load_member(folder)
    assert m.origin == {"store": "/d/s", "store_manifest_sha256": "m1", "images_sha256": "i1"}


# --- reading members --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("broken, match", [
    ("probs", r"probs_ten\.npy: cannot read probabilities \(.*pickle"),
    ("labels", r"labels\.npy: cannot read labels \(.*pickle"),
    ("eval.json", r"eval\.json is not readable JSON$"),
    ("labels file", r"y\.npy: cannot read labels \(.*pickle"),
])
def test_unreadable_files_are_named(tmp_path: Path, broken: str, match: str) -> None:
    """A garbage .npy (numpy takes it for pickled data, which is never loaded) or eval.json is a UserError."""
    folder = eval_folder(tmp_path / "a", stub_probs(3, 6, 1), np.zeros(3, np.int64))
    given = labels_file(tmp_path / "y.npy", np.zeros(3, np.int64))
    target = {"probs": folder / "probs_ten.npy", "labels": folder / "labels.npy", "eval.json": folder / "eval.json",
              "labels file": given}[broken]
    target.write_bytes(b"not an array")
    with pytest.raises(UserError, match=match):
        ensemble([folder], labels=given)


def test_what_each_kind_of_member_path_becomes(tmp_path: Path) -> None:
    """An eval folder is read for its probs_ten.npy by default; a missing path, a file of another kind, a .pth
    checkpoint without --data, and an eval folder without the asked patches are UserErrors naming it."""
    probs = stub_probs(3, 6, 1)
    folder = eval_folder(tmp_path / "a", probs, np.array([1, 2, 3]))
    m = load_member(folder)
    assert (m.name, m.source, m.labels.tolist(), m.split) == (str(folder), str(folder / "probs_ten.npy"), [1, 2, 3],
                                                              "val")
    np.testing.assert_allclose(m.probs, probs, atol=1e-7)
    with pytest.raises(UserError, match=re.escape(f"ensemble member {tmp_path / 'nope'} does not exist")):
        load_member(tmp_path / "nope")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UserError, match="is neither a probability file"):
        load_member(notes)
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"")
    with pytest.raises(UserError, match="is a trained run: name the store to evaluate it on") as err:
        load_member(weights)
    assert err.value.key == "data"
    centre = eval_folder(tmp_path / "c", probs, np.array([1, 2, 3]), mode="centre")
    np.save(centre / "probs_other.npy", probs)
    with pytest.raises(UserError) as err:
        load_member(centre, patches="ten")
    assert err.value.key == "patches"
    assert err.value.message == (f"ensemble member {centre} has no probs_ten.npy (it has probs_centre.npy, "
                                 f"probs_other.npy); choose the patches accordingly")


def test_unknown_patches_are_refused() -> None:
    with pytest.raises(UserError, match=r"^patches: unknown value 'five'; allowed: centre, ten$"):
        ensemble(["anything"], patches="five")


# --- members evaluated from checkpoints (the evaluator replaced by a recorder) ----------------------------------

class RecordingEvaluator:
    """Stands in for evaluate_checkpoint: records its arguments, returns fixed probabilities, and writes an
    eval.json with an origin into ``out`` as the real one does."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray) -> None:
        self.probs, self.labels = probs, labels
        self.calls: list[dict[str, Any]] = []

    def __call__(self, source, store_path, *, split, out, modes, batch_size, device, progress) -> SimpleNamespace:
        self.calls.append(dict(source=source, store_path=store_path, split=split, out=out, modes=modes,
                               batch_size=batch_size, device=device, progress=progress))
        if out is not None:
            out.mkdir(parents=True)
            (out / "eval.json").write_text(json.dumps({"store": "/d/s", "images_sha256": "i1"}))
        return SimpleNamespace(split=split or "val", labels=self.labels, probs={modes[0]: self.probs},
                               classes=tuple(CLASSES))


@pytest.fixture
def evaluator(monkeypatch) -> RecordingEvaluator:
    import alexnet.inference.evaluate as evaluate_module

    rec = RecordingEvaluator(stub_probs(3, 6, 1), np.array([0, 4, 5]))
    monkeypatch.setattr(evaluate_module, "evaluate_checkpoint", rec)
    return rec


def test_a_checkpoint_member_is_evaluated_with_the_defaults(tmp_path: Path, evaluator: RecordingEvaluator) -> None:
    """load_member's defaults: ten patches, the store's default split, batch 64, device auto, no progress bar,
    nothing saved; the member is named and sourced by the checkpoint and has no recorded origin."""
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    m = load_member(ckpt, data="/d/s")
    assert evaluator.calls == [dict(source=ckpt, store_path="/d/s", split=None, out=None, modes=("ten",),
                                    batch_size=64, device="auto", progress=False)]
    assert (m.name, m.source, m.split, m.origin, m.classes) == (str(ckpt), str(ckpt), "val", {}, CLASSES)
    assert m.labels.tolist() == [0, 4, 5] and m.probs is evaluator.probs


def test_a_checkpoint_member_is_saved_under_members(tmp_path: Path, evaluator: RecordingEvaluator) -> None:
    """With a work folder the first member (index 0) is evaluated into WORK/members/1, which becomes its source,
    and the eval.json written there gives its origin."""
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    m = load_member(ckpt, data="/d/s", work=tmp_path / "w", split="train")
    out = tmp_path / "w" / "members" / "1"
    assert evaluator.calls[0]["out"] == out
    assert (m.name, m.source, m.split, m.classes) == (str(ckpt), str(out), "train", CLASSES)
    assert m.origin == {"store": "/d/s", "images_sha256": "i1"}


def test_ensemble_passes_its_settings_to_the_evaluation(tmp_path: Path, evaluator: RecordingEvaluator) -> None:
    """ensemble's split, patches, batch size, device and progress reach evaluate_checkpoint, and its own
    defaults are batch 64, device auto and no progress bar."""
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    ensemble([ckpt], data="/d/s", split="train", patches="centre", batch_size=7, device="cpu", progress=True)
    ensemble([ckpt], data="/d/s")
    assert evaluator.calls == [
        dict(source=ckpt, store_path="/d/s", split="train", out=None, modes=("centre",), batch_size=7, device="cpu",
             progress=True),
        dict(source=ckpt, store_path="/d/s", split=None, out=None, modes=("ten",), batch_size=64, device="auto",
             progress=False),
    ]

"""The store format: write_store -> Store round trip, statistics, verification."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from alexnet.errors import UserError
from alexnet.data.shards import write_store
from alexnet.data.store import Store, verify_store

S = 16
CLASSES = [("n00000001", "one"), ("n00000002", "two"), ("n00000003", "three")]


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    images[..., 0] //= 2  # correlated, unequal channels so the covariance is not isotropic
    images[..., 2] = (images[..., 1].astype(np.int32) * 3 // 4 + images[..., 2] // 4).astype(np.uint8)
    return images, rng.integers(0, len(CLASSES), size=n)


@pytest.fixture()
def small_store(tmp_path: Path) -> tuple[Store, dict[str, tuple[np.ndarray, np.ndarray]]]:
    splits = {"train": _data(23, 0), "val": _data(7, 1)}
    store = write_store(tmp_path / "store", splits, CLASSES, shard_size=5)
    return store, splits


def test_round_trip_in_any_order(small_store) -> None:
    store, splits = small_store
    assert store.splits() == ["train", "val"]
    assert store.image_size == S and store.num_classes == 3 and store.classes == CLASSES
    train = store.split("train")
    images, labels = splits["train"]
    assert len(train) == 23
    assert train.labels.dtype == np.int64 and np.array_equal(train.labels, labels)
    for idx in (np.arange(23), np.array([22, 0, 5, 5, 11, 4]), np.random.default_rng(3).permutation(23)):
        got = train.read(idx)
        assert got.dtype == np.uint8 and got.shape == (len(idx), S, S, 3)
        assert np.array_equal(got, images[idx])
    assert train.read(np.array([], np.int64)).shape == (0, S, S, 3)
    with pytest.raises(IndexError):
        train.read(np.array([23]))
    assert train.paths()[:2] == ["train/0", "train/1"]
    # shards are memory-mappable .npy files of (N, S, S, 3)
    shard = np.load(store.path / "train" / "shard-00000.npy", mmap_mode="r")
    assert shard.shape == (5, S, S, 3)


def test_split_survives_pickling(small_store) -> None:
    store, splits = small_store
    train = store.split("train")
    train.read(np.array([1]))
    assert train.__getstate__()["_shards"] == {}  # open shard maps stay in this process, not in the pickle
    clone = pickle.loads(pickle.dumps(train))
    assert clone._shards == {} and set(vars(clone)) == set(vars(train))
    assert np.array_equal(clone.read(np.array([4, 2])), splits["train"][0][[4, 2]])


def test_errors_name_the_problem(small_store, tmp_path: Path) -> None:
    store, _ = small_store
    with pytest.raises(UserError, match=r"no split 'test'.*train, val"):
        store.split("test")
    with pytest.raises(UserError, match="does not exist"):
        Store(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="manifest.json is missing"):
        Store(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        Store(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text(json.dumps({"kind": "alexnet-store", "format_version": 1}))
    with pytest.raises(UserError, match="malformed"):
        Store(tmp_path / "empty")
    with pytest.raises(UserError, match="uint8"):
        write_store(tmp_path / "bad", {"train": (np.zeros((2, S, S, 3), np.float32), np.zeros(2))}, CLASSES)


def test_stats_match_numpy_in_memory(small_store) -> None:
    store, splits = small_store
    images = splits["train"][0].astype(np.float64)
    st = store.stats()
    assert st.count == 23
    assert st.mean_image.dtype == np.float32 and st.mean_image.shape == (S, S, 3)
    np.testing.assert_allclose(st.mean_image, images.mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(st.channel_mean, images.reshape(-1, 3).mean(axis=0), rtol=1e-6)
    cov = np.cov(images.reshape(-1, 3), rowvar=False, bias=True)
    np.testing.assert_allclose(st.covariance, cov, rtol=1e-10)
    assert st.covariance.dtype == np.float64
    assert np.all(np.diff(st.eigenvalues) <= 0), "eigenvalues descending"
    for i in range(3):  # columns are eigenvectors p_i of the covariance, unit length
        np.testing.assert_allclose(cov @ st.eigenvectors[:, i], st.eigenvalues[i] * st.eigenvectors[:, i], atol=1e-8)
    np.testing.assert_allclose(st.eigenvectors.T @ st.eigenvectors, np.eye(3), atol=1e-12)
    with np.load(store.path / "stats.npz") as z:
        assert "0..255" in str(z["units"]) and str(z["split"]) == "train"


def test_stats_come_only_from_the_training_split(tmp_path: Path) -> None:
    train, val = _data(4, 5), _data(4, 6)
    val[0][:] = 255
    st = write_store(tmp_path / "s", {"train": train, "val": val}, CLASSES).stats()
    np.testing.assert_allclose(st.mean_image, train[0].mean(axis=0), atol=1e-4)
    no_train = write_store(tmp_path / "t", {"test": val}, CLASSES)
    with pytest.raises(UserError, match="no statistics"):
        no_train.stats()


def test_rewriting_gives_identical_bytes(tmp_path: Path) -> None:
    splits = {"train": _data(9, 2)}
    digests = []
    for name in ("a", "b"):
        write_store(tmp_path / name, splits, CLASSES, shard_size=4)
        digests.append({p.relative_to(tmp_path / name).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
    assert digests[0] == digests[1]
    assert "stats.npz" in digests[0]


def test_verify_detects_a_flipped_byte(small_store) -> None:
    store, _ = small_store
    assert verify_store(store.path) == []
    shard = store.path / "val" / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = verify_store(store.path)
    assert len(problems) == 1 and "val/shard-00001.npy" in problems[0] and "checksum" in problems[0]
    (store.path / "train" / "shard-00002.npy").unlink()
    assert any("train/shard-00002.npy" in p for p in verify_store(store.path))


@pytest.mark.parametrize("name", ["classes.tsv", "rejected.tsv", "notes.tsv", "stats.npz", "train/labels.npy",
                                  "val/paths.txt"])
def test_verify_checks_every_file_of_the_store(small_store, name: str) -> None:
    """Tables, statistics, labels and paths have checksums in the manifest too: a changed byte is reported."""
    store, _ = small_store
    path = store.path / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify_store(store.path)
    assert len(problems) == 1 and name in problems[0] and "checksum" in problems[0]
    path.unlink()
    assert any(name in p and "cannot be read" in p for p in verify_store(store.path))


def test_jpeg_format_round_trip(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([(xx * 8) % 256, (yy * 8) % 256, ((xx + yy) * 4) % 256], -1).astype(np.uint8)
    images = np.stack([smooth, smooth[::-1], smooth[:, ::-1]])
    store = write_store(tmp_path / "j", {"train": (images, np.array([0, 1, 2]))}, CLASSES, fmt="jpeg", shard_size=2)
    assert store.manifest["format"] == "jpeg" and store.manifest["jpeg_quality"] == 95
    got = store.split("train").read(np.array([2, 0]))
    assert got.shape == (2, 32, 32, 3)
    assert np.abs(got.astype(int) - images[[2, 0]].astype(int)).mean() < 3.0
    assert verify_store(store.path) == []
    assert store.stats().count == 3


def test_verify_names_each_structural_problem_beside_the_checksum(tmp_path: Path) -> None:
    """A shard one byte short, a labels file of the wrong length and a manifest count that the shards do not
    hold: each is one sentence naming the file and the sizes, besides the checksum mismatches."""
    from helpers import make_store

    store = make_store(tmp_path / "s", train=8, val=4, size=8)
    shard = store.path / "train" / "shard-00000.npy"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:-1])
    problems = verify_store(store.path)
    assert f"train/shard-00000.npy: {size - 1} bytes, expected {size}: truncated or overwritten" in problems
    assert "train/shard-00000.npy: checksum mismatch (file is corrupt or was modified)" in problems
    np.save(store.path / "val" / "labels.npy", np.zeros(3, dtype=np.int64))
    assert "val/labels.npy: holds int64 (3,), expected int64 (4,)" in verify_store(store.path)
    manifest_path = next(p for p in store.path.glob("*.json") if "splits" in json.loads(p.read_text()))
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["val"]["count"] = 5
    manifest_path.write_text(json.dumps(manifest))
    assert "split val: shards hold 4 images but the manifest says 5" in verify_store(store.path)


def test_a_store_without_val_or_test_names_the_split_to_give(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s", {"train": _data(8, 0), "holdout": _data(4, 1)}, CLASSES)
    with pytest.raises(UserError) as err:
        store.evaluation_split()
    assert err.value.key == "split"
    assert err.value.message == f"store {store.path} has no val or test split; name one"
    assert store.evaluation_split("holdout") == "holdout"


# --------------------------------------------------------------------------- exact messages and small defaults


def _tail(p: Path) -> str:
    return f"; `alexnet prepare --verify {p}` checks every file, and rerunning the `alexnet prepare` that made it repairs it"


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_for_use_checks_the_named_splits_by_mode(small_store, monkeypatch) -> None:
    import alexnet.data.store as sm
    from alexnet.data.store import verify_for_use

    store, _ = small_store
    p = store.path
    with pytest.raises(UserError) as err:
        verify_for_use(store, ["val"], "fast")
    assert err.value.message == "unknown value 'fast'; allowed: auto, checksums, sizes" and err.value.key == "data.verify"
    _flip(p / "val" / "shard-00001.npy")
    verify_for_use(store, ["train"])  # only the named splits are checked
    verify_for_use(store, ["val"], "sizes")
    want = f"store {p}: val/shard-00001.npy is damaged (checksum mismatch (file is corrupt or was modified))" + _tail(p)
    for mode in ((), ("auto",), ("checksums",)):
        with pytest.raises(UserError) as err:
            verify_for_use(store, ["val"], *mode)
        assert err.value.message == want
    val_bytes = (p / "val" / "shard-00000.npy").stat().st_size + (p / "val" / "shard-00001.npy").stat().st_size
    monkeypatch.setattr(sm, "AUTO_VERIFY_BYTES", val_bytes)
    with pytest.raises(UserError):
        verify_for_use(store, ["val"])
    monkeypatch.setattr(sm, "AUTO_VERIFY_BYTES", val_bytes - 1)
    verify_for_use(store, ["val"])
    verify_for_use(store, ["val"], "sizes")


def test_store_bytes_sums_the_shard_files(small_store) -> None:
    from alexnet.data.store import store_bytes

    store, _ = small_store
    # 128-byte .npy header + N x 16 x 16 x 3 bytes per shard: train 5+5+5+5+3, val 5+2
    assert store_bytes(store, ["val"]) == (128 + 5 * 768) + (128 + 2 * 768)
    assert store_bytes(store, ["train", "val"]) == 7 * 128 + 30 * 768


def test_check_checksums_names_the_first_file_and_counts_the_rest(small_store) -> None:
    from alexnet.data.store import check_checksums

    store, _ = small_store
    p = store.path
    check_checksums(store, ["val"])
    _flip(p / "val" / "shard-00000.npy")
    _flip(p / "val" / "shard-00001.npy")
    with pytest.raises(UserError) as err:
        check_checksums(store, ["val"], threads=2)
    assert err.value.message == (f"store {p}: val/shard-00000.npy is damaged (checksum mismatch (file is corrupt or "
                                 f"was modified) (1 more files are damaged))" + _tail(p))
    check_checksums(store, ["train"])
    (p / "val" / "shard-00000.npy").unlink()
    _flip(p / "val" / "labels.npy")
    with pytest.raises(UserError) as err:
        check_checksums(store, ["val"])
    assert err.value.message == (f"store {p}: val/shard-00000.npy is damaged (cannot be read (No such file or "
                                 f"directory) (2 more files are damaged))" + _tail(p))


def test_manifest_digest_is_the_manifest_sha256(small_store) -> None:
    from alexnet.data.store import manifest_digest

    store, _ = small_store
    assert manifest_digest(store) == hashlib.sha256((store.path / "manifest.json").read_bytes()).hexdigest()


def test_read_checks_indices_and_keeps_open_memory_maps(small_store) -> None:
    store, splits = small_store
    train = store.split("train")
    images = splits["train"][0]
    with pytest.raises(IndexError) as err:
        train.read(np.array([23]))
    assert str(err.value) == "split 'train': index out of range 0..22"
    assert np.array_equal(train.read(np.array([[1, 7], [3, 6]])), images[[1, 7, 3, 6]])
    assert np.array_equal(train.read(np.array([4.0, 2.0])), images[[4, 2]])
    assert isinstance(train._shards[0], np.memmap) and isinstance(train._shards[1], np.memmap)
    fake = np.zeros((5, S, S, 3), np.uint8)
    train._shards[0] = fake
    assert not train.read(np.array([3])).any()  # the cached shard is used, not reopened


def test_jpeg_shards_read_by_offset_and_empty_shards_load(tmp_path: Path) -> None:
    from alexnet.data.store import load_shard

    yy, xx = np.mgrid[0:16, 0:16]
    smooth = np.stack([(xx * 16) % 256, (yy * 16) % 256, ((xx + yy) * 8) % 256], -1).astype(np.uint8)
    images = np.stack([smooth, smooth[::-1], smooth[:, ::-1]])
    store = write_store(tmp_path / "j", {"train": (images, np.array([0, 1, 2]))}, CLASSES, fmt="jpeg", shard_size=2)
    train = store.split("train")
    got = train.read(np.array([1]))
    assert np.abs(got.astype(int) - images[[1]].astype(int)).mean() < 3.0
    assert isinstance(train._shards[0][0], np.memmap)
    shard = load_shard(store.path / "train", 0, "jpeg")
    assert shard.shape == (2, 16, 16, 3)
    folder = tmp_path / "empty"
    folder.mkdir()
    np.save(folder / "shard-00000.jpeg.npy", np.zeros(0, np.uint8))
    np.save(folder / "shard-00000.offsets.npy", np.zeros(1, np.int64))
    empty = load_shard(folder, 0, "jpeg")
    assert empty.shape == (0, 0, 0, 3) and empty.dtype == np.uint8


def test_load_shard_maps_npy_shards(small_store) -> None:
    from alexnet.data.store import load_shard

    store, splits = small_store
    shard = load_shard(store.path / "val", 1, "npy")
    assert isinstance(shard, np.memmap) and np.array_equal(shard, splits["val"][0][5:])


def test_opening_a_split_names_the_damaged_file(small_store) -> None:
    store, _ = small_store
    p = store.path
    shard = p / "train" / "shard-00000.npy"
    good = shard.read_bytes()
    shard.write_bytes(good[:-1])
    with pytest.raises(UserError) as err:
        store.split("train")
    assert err.value.message == (f"store {p}: train/shard-00000.npy is damaged (3967 bytes, expected 3968: "
                                 f"truncated or overwritten)" + _tail(p))
    shard.write_bytes(good)
    labels = p / "val" / "labels.npy"
    real = np.load(labels)
    cases = [
        (np.zeros(6, np.int64), "holds int64 (6,), expected int64 (7,)"),
        (np.zeros(7, np.int32), "holds int32 (7,), expected int64 (7,)"),
        (np.full(7, 3, np.int64), "labels outside -1..2"),
        (np.full(7, -2, np.int64), "labels outside -1..2"),
    ]
    for array, problem in cases:
        np.save(labels, array)
        with pytest.raises(UserError) as err:
            store.split("val")
        assert err.value.message == f"store {p}: val/labels.npy is damaged ({problem})" + _tail(p)
    np.save(labels, np.array([-1, 0, 1, 2, 2, 1, -1], np.int64))
    assert store.split("val").labels.tolist() == [-1, 0, 1, 2, 2, 1, -1]
    with open(labels, "wb") as f:
        np.lib.format.write_array(f, real, version=(2, 0))
    assert np.array_equal(store.split("val").labels, real)
    labels.write_bytes(b"not an array at all")
    with pytest.raises(UserError) as err:
        store.split("val")
    assert err.value.message.startswith(f"store {p}: val/labels.npy is damaged (not a readable array: the magic string")
    labels.unlink()
    with pytest.raises(UserError) as err:
        store.split("val")
    assert err.value.message == f"store {p}: val/labels.npy is damaged (missing)" + _tail(p)


def test_paths_name_a_missing_or_short_list(small_store) -> None:
    store, _ = small_store
    p = store.path
    val = store.split("val")
    (p / "val" / "paths.txt").write_text("a\nb\n", "utf-8")
    with pytest.raises(UserError) as err:
        val.paths()
    assert err.value.message == f"store {p}: val/paths.txt is damaged (2 lines for 7 images)" + _tail(p)
    (p / "val" / "paths.txt").unlink()
    with pytest.raises(UserError) as err:
        val.paths()
    assert err.value.message == (f"store {p}: val/paths.txt is damaged (cannot be read: [Errno 2] No such file or "
                                 f"directory: '{p / 'val' / 'paths.txt'}')" + _tail(p))


def test_jpeg_shard_problems_name_the_offsets(tmp_path: Path) -> None:
    from alexnet.data.store import shard_problem

    np.save(tmp_path / "shard-00000.jpeg.npy", np.arange(10, dtype=np.uint8))
    offsets = tmp_path / "shard-00000.offsets.npy"
    cover = "its offsets do not cover the 10 bytes of shard-00000.jpeg.npy"
    for values, count, want in [([0, 4, 10], 2, None), ([0, 1, 10], 2, None), ([1, 4, 10], 2, cover),
                                ([0, 4, 9], 2, cover), ([0, 4, 4, 10], 3, cover),
                                ([0, 4, 10], 3, "holds int64 (3,), expected int64 (4,)")]:
        np.save(offsets, np.array(values, np.int64))
        assert shard_problem(tmp_path, 0, "jpeg", count, 8) == want, values
    offsets.unlink()
    assert shard_problem(tmp_path, 0, "jpeg", 2, 8) == "missing"
    np.save(tmp_path / "shard-00000.jpeg.npy", np.arange(10, dtype=np.int16))
    assert shard_problem(tmp_path, 0, "jpeg", 2, 8) == "holds int16 (10,), expected uint8 (N,)"


def _edit_manifest(p: Path, **fields) -> None:
    manifest = json.loads((p / "manifest.json").read_text())
    manifest.update(fields)
    (p / "manifest.json").write_text(json.dumps(manifest))


def test_opening_a_store_names_what_is_wrong(small_store) -> None:
    store, _ = small_store
    p = store.path
    assert store.decision_split() == "val" and store.decision_split("train") == "train"
    with pytest.raises(UserError):
        store.decision_split("nope")
    (p / ".prepare-in-progress.json").write_text("{}")
    with pytest.raises(UserError) as err:
        Store(p)
    assert err.value.message == (f"store {p} is incomplete: `alexnet prepare` is writing it or was interrupted "
                                 f"(.prepare-in-progress.json is present); rerun that `alexnet prepare` to finish it")
    (p / ".prepare-in-progress.json").unlink()
    _edit_manifest(p, splits={})
    empty = Store(p)
    assert empty.decision_split() is None
    with pytest.raises(UserError) as err:
        empty.split("train")
    assert err.value.message == f"store {p} has no split 'train'; available: none"
    _edit_manifest(p, format="zip")
    with pytest.raises(UserError) as err:
        Store(p)
    assert err.value.message == f"store {p} has unknown format 'zip'"
    _edit_manifest(p, format_version=2)
    with pytest.raises(UserError) as err:
        Store(p)
    assert err.value.message == f"store {p} has format version 2; this program reads version 1"
    _edit_manifest(p, kind="other")
    with pytest.raises(UserError) as err:
        Store(p)
    assert err.value.message == f"{p / 'manifest.json'} is not an alexnet store manifest"
    (p / "manifest.json").write_text("[1]")
    with pytest.raises(UserError) as err:
        Store(p)
    assert err.value.message == f"{p / 'manifest.json'} is not an alexnet store manifest"


def test_decision_split_prefers_the_holdout(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s", {"train": _data(8, 0), "holdout": _data(4, 1), "val": _data(4, 2)}, CLASSES)
    assert store.decision_split() == "holdout" and store.decision_split("auto") == "holdout"


def test_damaged_statistics_are_named(small_store) -> None:
    store, _ = small_store
    p = store.path
    (p / "stats.npz").write_bytes(b"PK broken")
    with pytest.raises(UserError) as err:
        Store(p).stats()
    assert err.value.message.startswith(f"store {p}: stats.npz is damaged (cannot be read: ")
    assert err.value.message.endswith(")" + _tail(p))

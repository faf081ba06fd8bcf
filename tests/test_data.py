"""Tests for amint.data: membership splits, the idx reader, Fashion-MNIST and imagefolder loading."""

import gzip
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amint import data
from amint.data import (
    FASHION_MNIST_FILES,
    MembershipSplit,
    available_benchmarks,
    default_split_sizes,
    load_benchmark,
    make_split,
    read_idx,
)

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()


# --- membership splits -------------------------------------------------------------------------------

SIZES = dict(n_train=1200, n_test=300, n_members=500, n_external=550, n_calibration=100)


def _parts(split: MembershipSplit) -> dict[str, torch.Tensor]:
    return {k: getattr(split, k) for k in ("members", "external", "calibration_nonmembers",
                                            "calibration_members", "eval_members", "eval_nonmembers")}


def test_split_same_seed_identical_and_different_seed_differs():
    a, b, c = make_split(**SIZES, seed=3), make_split(**SIZES, seed=3), make_split(**SIZES, seed=4)
    for name, t in _parts(a).items():
        assert torch.equal(t, _parts(b)[name]), name
    assert not torch.equal(a.members, c.members)
    assert not torch.equal(a.calibration_members, c.calibration_members)


def test_split_sizes_dtypes_and_disjointness():
    s = make_split(**SIZES, seed=0)
    p = _parts(s)
    assert all(t.dtype == torch.int64 for t in p.values())
    assert [len(p[k]) for k in p] == [500, 550, 100, 100, 400, 300]
    train_pools = [set(p[k].tolist()) for k in ("members", "external", "calibration_nonmembers")]
    assert sum(map(len, train_pools)) == len(set().union(*train_pools)) == 1150  # disjoint, no duplicates
    assert all(0 <= i < 1200 for pool in train_pools for i in pool)
    cal_m, eval_m = set(p["calibration_members"].tolist()), set(p["eval_members"].tolist())
    assert not cal_m & eval_m and cal_m | eval_m == train_pools[0]
    assert p["eval_nonmembers"].tolist() == list(range(300))


def test_split_uses_one_seeded_permutation():
    s = make_split(**SIZES, seed=7)
    perm = torch.randperm(1200, generator=torch.Generator().manual_seed(7))
    assert torch.equal(s.members, perm[:500]) and torch.equal(s.external, perm[500:1050])
    assert torch.equal(s.calibration_nonmembers, perm[1050:1150])


@pytest.mark.parametrize("change, match", [
    (dict(n_members=700), "exceeds"),
    (dict(n_calibration=500, n_external=100), "smaller than n_members"),
    (dict(n_external=-1), "non-negative"),
])
def test_split_rejects_bad_sizes(change, match):
    with pytest.raises(ValueError, match=match):
        make_split(**{**SIZES, **change})


def test_split_config_round_trip_through_json():
    s = make_split(**SIZES, seed=11)
    cfg = json.loads(json.dumps(s.to_config()))
    assert cfg["n_train"] == 1200 and cfg["n_test"] == 300 and len(cfg["members_sha256"]) == 64
    back = MembershipSplit.from_config(cfg)
    for name, t in _parts(s).items():
        assert torch.equal(t, _parts(back)[name]), name


def test_split_config_digest_mismatch_and_bad_keys():
    cfg = make_split(**SIZES, seed=11).to_config()
    with pytest.raises(ValueError, match="sha256 mismatch"):
        MembershipSplit.from_config({**cfg, "members_sha256": "0" * 64})
    with pytest.raises(ValueError, match="sha256 mismatch"):
        MembershipSplit.from_config({**cfg, "seed": 12})  # digest no longer matches the seed
    with pytest.raises(ValueError, match="unknown"):
        MembershipSplit.from_config({**cfg, "extra": 1})


def test_default_split_sizes_follow_paper_proportions():
    assert default_split_sizes("fashion-mnist", 60000) == {"members": 25000, "external": 30000,
                                                           "calibration": 5000}
    sizes = default_split_sizes("cifar10", 50000)
    assert sum(sizes.values()) == 50000 and sizes["calibration"] < sizes["members"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        default_split_sizes("nope", 60000)


def test_unknown_benchmark_lists_available():
    assert "fashion-mnist" in available_benchmarks() and "imagefolder:PATH" in available_benchmarks()
    with pytest.raises(ValueError, match="cifar10"):
        load_benchmark("imagenet")


# --- idx reader ---------------------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def test_read_idx_tiny_file(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "x-idx3-ubyte.gz", images)), images)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "y-idx1-ubyte", np.array([3, 1], np.uint8))), [3, 1])


def test_read_idx_corrupt_files_name_the_file(tmp_path):
    not_gzip = tmp_path / "bad-idx3-ubyte.gz"
    not_gzip.write_bytes(b"this is not gzip")
    truncated = _write_idx(tmp_path / "short-idx3-ubyte", np.zeros((2, 3, 4), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-5])
    wrong_magic = tmp_path / "magic.gz"
    wrong_magic.write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
    for path in (not_gzip, truncated, wrong_magic):
        with pytest.raises(ValueError, match=path.name):
            read_idx(path)


def test_fashion_mnist_from_tiny_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in zip(FASHION_MNIST_FILES, (6, 6, 4, 4)):
        arr = rng.integers(0, 255, (n, 28, 28)) if "images" in name else rng.integers(0, 10, n)
        _write_idx(tmp_path / name, arr)
    b = load_benchmark("fashion-mnist", root=tmp_path)
    assert b.train_images.shape == (6, 1, 28, 28) and b.test_labels.shape == (4,)
    assert b.class_names[0] == "T-shirt/top" and len(b.class_names) == 10
    expected = read_idx(tmp_path / FASHION_MNIST_FILES[0]).astype(np.float64) / 255
    assert b.mean[0] == pytest.approx(expected.mean()) and b.std[0] == pytest.approx(expected.std())
    assert load_benchmark("fashion-mnist", root=tmp_path) is b  # cached
    assert load_benchmark("fashion-mnist", root=tmp_path, image_size=32).image_size == 32


@pytest.mark.skipif(not (SYSTEM_FMNIST / FASHION_MNIST_FILES[0]).exists(), reason="no system Fashion-MNIST")
def test_fashion_mnist_real_files(monkeypatch, tmp_path):
    monkeypatch.setenv("AMINT_DATA_DIR", str(tmp_path))  # empty: forces the system copy
    b = load_benchmark("fashion-mnist")
    assert b.train_images.shape == (60000, 1, 28, 28) and b.test_images.shape == (10000, 1, 28, 28)
    assert b.train_images.dtype == torch.uint8 and b.train_labels.dtype == torch.int64
    assert len(b.class_names) == 10 and set(b.train_labels.unique().tolist()) == set(range(10))
    assert b.channels == 1 and b.image_size == 28 and 0.2 < b.mean[0] < 0.4


def _no_download(*args, **kwargs):
    raise RuntimeError("network unreachable")


def test_fashion_mnist_missing_names_the_files(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setenv("AMINT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _no_download)
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("fashion-mnist", root=tmp_path)
    message = str(info.value)
    assert all(name in message for name in FASHION_MNIST_FILES)
    assert str(tmp_path) in message and "apt-get install dataset-fashion-mnist" in message


def test_torchvision_benchmark_missing_says_where(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _no_download)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py") as info:
        load_benchmark("cifar10", root=tmp_path)
    assert str(tmp_path) in str(info.value) and "cifar10" in str(info.value)


# --- imagefolder ----------------------------------------------------------------------------------------

def _png(path: Path, value: int, mode: str = "RGB", size: tuple[int, int] = (10, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def test_imagefolder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for c, cls in enumerate(("cat", "ant")):
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png", 40 * c + i)
    b = load_benchmark(f"imagefolder:{tmp_path}", image_size=8)
    assert b.class_names == ["ant", "cat"]  # sorted folder names
    assert b.train_images.shape == (6, 3, 8, 8) and b.test_images.shape == (4, 3, 8, 8)
    assert b.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert b.train_images[0, 0, 0, 0].item() == 40 and b.train_images[3, 0, 0, 0].item() == 0


def test_imagefolder_without_splits_is_deterministic_and_grayscale(tmp_path):
    for cls in ("a", "b"):
        for i in range(5):
            _png(tmp_path / cls / f"{i}.png", 10 * i, mode="L")
    (tmp_path / "a" / "notes.txt").write_text("not an image")  # ignored, not a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load_benchmark(f"imagefolder:{tmp_path}")
    assert b.channels == 1 and b.image_size == 64
    assert len(b.train_images) == 8 and len(b.test_images) == 2 and b.test_labels.tolist() == [0, 1]
    data._load_cached.cache_clear()
    again = load_benchmark(f"imagefolder:{tmp_path}")
    assert torch.equal(again.test_images, b.test_images)


def test_imagefolder_skips_a_corrupt_file_with_a_warning(tmp_path):
    for cls in ("x", "y"):
        for i in range(5):
            _png(tmp_path / cls / f"{i}.png", i)
    (tmp_path / "y" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="broken.png"):
        b = load_benchmark(f"imagefolder:{tmp_path}", image_size=4)
    assert len(b.train_images) + len(b.test_images) == 10


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_benchmark(f"imagefolder:{tmp_path / 'missing'}")
    _png(tmp_path / "flat" / "loose.png", 1)
    with pytest.raises(ValueError, match="no class subfolders"):
        load_benchmark(f"imagefolder:{tmp_path / 'flat'}")
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "bad.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="bad.png"), pytest.raises(ValueError, match="no readable images"):
        load_benchmark(f"imagefolder:{tmp_path / 'junk'}")

"""Pairs from strangers: loading runs no code, refuses pickles, and fails in words before a large allocation."""

from __future__ import annotations

import json
import pickle
import resource
import shutil
from pathlib import Path

import pytest
import torch

from amint.pair import CONFIG_NAME, WEIGHTS_NAME, AuditedPair
from tests.hubserver import fake_hub  # noqa: F401  (fixture)


class _Payload:
    """Unpickling this writes a marker file: proof that code from the pair ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code from the pair ran"))


@pytest.fixture
def folder(tiny_pair, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_pair[1], tmp_path / "pair"))


def _pickled_only(folder: Path, marker: Path) -> Path:
    (folder / WEIGHTS_NAME).unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    return folder


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, **changes}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_loading_never_unpickles(folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pair was loaded through pickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert AuditedPair.from_pretrained(folder).config.backbone == "resnet18"


def test_a_folder_with_only_pickled_weights_is_refused_with_the_reason(folder, tmp_path):
    marker = tmp_path / "ran.txt"
    with pytest.raises(FileNotFoundError, match=r"only pickled weights \(pytorch_model\.bin\).*run any code"):
        AuditedPair.from_pretrained(_pickled_only(folder, marker))
    assert not marker.exists()


def test_a_hub_repo_with_only_pickled_weights_is_refused_with_the_reason(fake_hub, folder, tmp_path):  # noqa: F811
    marker = tmp_path / "ran.txt"
    fake_hub.add_repo("acme/pickled", _pickled_only(folder, marker))
    with pytest.raises(FileNotFoundError, match=r"Hub repo acme/pickled holds only pickled weights \(pytorch_model\.bin\)"):
        AuditedPair.from_pretrained("acme/pickled")
    assert not marker.exists()


@pytest.mark.parametrize("changes, message", [
    ({"backbone": "resnet_from_mars"}, r"Unknown backbone 'resnet_from_mars'"),
    ({"backbone": "__import__('os').system('id')"}, r"Unknown backbone"),
    ({"image_size": 1_000_000}, r"image_size is 1000000; a pair's must be a whole number from 8 to 1,024"),
    ({"image_size": "28"}, r"image_size is '28'"),
    ({"num_classes": 10**9, "class_names": []}, r"num_classes is 1000000000"),
    ({"in_chans": 4}, r"in_chans is 4"),
    ({"mean": [0.5, 0.5]}, r"mean and std need 1 value"),
    ({"backbone_kwargs": {"channels": [100_000] * 4}}, r"take \d+\.\d GB \([\d,]+ bytes\); the limit is 2\.0 GB"),
    # 403M elements, under the 500M-element cap the limit once was; but 400M of them are float64 hyperplanes: 3.2 GB.
    ({"head": {"trace": {"width": 16, "hidden": 64},
               "memories": {"big": {"pool": 1, "dims": 256, "tables": 25_200, "bits": 62, "buckets_log2": 8}}}},
     r"take 3\.2 GB \([\d,]+ bytes\); the limit is 2\.0 GB"),
    ({"head": {"trace": {"width": 16, "hidden": 4096}, "memories": {}}}, r"wrong shapes \['head\.trace"),
    ({"num_classes": 5, "class_names": list("abcde")}, r"wrong shapes \['backbone\.fc\.weight \(4, 16\) \(config: \(5, 16\)\)"),
    ({"backbone_kwargs": {"no_such_option": 1}}, r"cannot be built \(TypeError"),
])
def test_a_hostile_config_fails_in_words_before_a_large_allocation(folder, changes, message):
    _edit_config(folder, **changes)
    before = _peak_rss_mb()
    with pytest.raises(ValueError, match=message):
        AuditedPair.from_pretrained(folder)
    assert _peak_rss_mb() - before < 200  # the 100,000-channel model would need hundreds of GB


@pytest.mark.parametrize("memory, message", [
    ({"pool": 0}, r"head\.memories\.aligned\.pool is 0; it must be a whole number >= 1"),
    ({"zooms": [0]}, r"head\.memories\.aligned\.zooms holds 0; each zoom must be a fraction in \(0, 1\]"),
    ({"zooms": [float("nan")]}, r"head\.memories\.aligned\.zooms holds nan"),
], ids=["pool-0", "zoom-0", "zoom-nan"])
def test_a_memory_that_cannot_be_queried_is_refused_at_load(tiny_memory_pair, tmp_path, memory, message):
    """Not a division by zero at load (pool) or at the first query (zoom): the field and its range, in words."""
    folder = Path(shutil.copytree(tiny_memory_pair[1], tmp_path / "pair"))
    head = json.loads((folder / CONFIG_NAME).read_text())["head"]
    head["memories"]["aligned"].update(memory)
    _edit_config(folder, head=head)  # json writes nan as NaN, which json.loads reads back
    with pytest.raises(ValueError, match=message):
        AuditedPair.from_pretrained(folder)


def test_a_damaged_safetensors_header_is_a_clear_error(folder):
    (folder / WEIGHTS_NAME).write_bytes(b"\xff" * 8 + b"{not json")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        AuditedPair.from_pretrained(folder)


def test_revision_pins_a_commit(fake_hub, tiny_pair, folder):  # noqa: F811
    from huggingface_hub import HfApi

    _, saved = tiny_pair
    fake_hub.add_repo("acme/pinned", saved)
    fake_hub.add_repo("acme/pinned", saved, revision="v1")  # keeps the first content reachable
    first = HfApi().model_info("acme/pinned").sha
    _edit_config(folder, dataset="moved-on")
    fake_hub.add_repo("acme/pinned", folder)  # main moves on
    assert HfApi().model_info("acme/pinned").sha != first
    assert AuditedPair.from_pretrained("acme/pinned").config.dataset == "moved-on"
    pinned = AuditedPair.from_pretrained(f"acme/pinned@{first}")
    assert pinned.config.dataset == json.loads((saved / CONFIG_NAME).read_text())["dataset"] != "moved-on"
    with pytest.raises(FileNotFoundError, match="no revision"):
        AuditedPair.from_pretrained("acme/pinned@" + "0" * 40)


def test_saving_is_atomic(tiny_pair, tmp_path, monkeypatch):
    """A save that fails half way leaves no pair (new folder) or the old pair intact (existing folder)."""
    import amint.pair as pair_module

    pair, saved = tiny_pair
    target = tmp_path / "models" / "new-pair"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pair_module, "render_model_card", fail)
    with pytest.raises(OSError, match="disk full"):
        pair.save_pretrained(target)
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []

    existing = Path(shutil.copytree(saved, tmp_path / "models" / "old-pair"))
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        pair.save_pretrained(existing)
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["old-pair"]
    monkeypatch.undo()
    assert AuditedPair.from_pretrained(pair.save_pretrained(target)).config.threshold == pair.config.threshold


def test_push_errors_never_show_the_token(fake_hub, tiny_pair, monkeypatch):  # noqa: F811
    secret = "hf_secret_token_that_must_not_leak_123"
    pair, _ = tiny_pair
    monkeypatch.delenv("HF_TOKEN")

    def leaky(*args, **kwargs):  # a library error that quotes the token
        raise RuntimeError(f"401 Unauthorized for token {secret}")

    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", leaky)
    with pytest.raises(RuntimeError) as err:
        pair.push_to_hub("acme/leak", token=secret)
    assert secret not in str(err.value) and "token hidden" in str(err.value)

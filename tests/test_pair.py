"""amint.pair: the saved layout round-trips exactly, loads strictly, and works through a (fake) Hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from amint.pair import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, AuditedPair
from tests.hubserver import fake_hub  # noqa: F401


@torch.no_grad()
def _outputs(pair: AuditedPair, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    pair.eval()
    out = pair(pair.normalize(images))
    return out.class_logits, out.evidence


def _assert_same_pair(a: AuditedPair, b: AuditedPair, images: torch.Tensor) -> None:
    assert all(torch.equal(x, y) for x, y in zip(_outputs(a, images), _outputs(b, images)))
    assert a.config.to_dict() == b.config.to_dict()


@pytest.fixture
def folder(tiny_pair, tmp_path) -> Path:
    """A private copy of the tiny pair's folder, safe to damage."""
    return Path(shutil.copytree(tiny_pair[1], tmp_path / "pair"))


@pytest.mark.parametrize("which", ["tiny_pair", "tiny_memory_pair"])
def test_save_load_round_trip_is_bit_identical(which, request, synthetic, tmp_path):
    pair, saved_by_training = request.getfixturevalue(which)
    images = synthetic.test_images[:32]
    _assert_same_pair(pair, AuditedPair.from_pretrained(saved_by_training), images)
    again = pair.save_pretrained(tmp_path / "again")
    loaded = AuditedPair.from_pretrained(str(again))
    _assert_same_pair(pair, loaded, images)
    assert not loaded.training
    assert {p.name for p in again.iterdir()} == {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}
    assert json.loads((again / CONFIG_NAME).read_text())["readings"]["amint"]["threshold"] == pair.config.threshold


def test_missing_head_weight_is_a_clear_error(folder):
    state = load_file(str(folder / WEIGHTS_NAME))
    head_key = next(k for k in state if k.startswith("head.") and k.endswith(".weight"))
    del state[head_key]
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=rf"missing \[.*{head_key}"):
        AuditedPair.from_pretrained(folder)


def test_unexpected_weight_is_a_clear_error(folder):
    state = load_file(str(folder / WEIGHTS_NAME))
    state["head.extra"] = torch.zeros(1)
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(ValueError, match="unexpected.*head.extra"):
        AuditedPair.from_pretrained(folder)


def test_unknown_config_key_and_missing_files(folder, tmp_path):
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "from_the_future": 1}))
    with pytest.raises(ValueError, match="from_the_future"):
        AuditedPair.from_pretrained(folder)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        AuditedPair.from_pretrained(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a pair folder"):
        AuditedPair.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a pair folder nor a Hub repo id"):
        AuditedPair.from_pretrained(tmp_path / "no" / "such" / "pair")


def test_load_by_repo_id_and_revision(fake_hub, tiny_pair, synthetic, folder):  # noqa: F811
    pair, saved = tiny_pair
    fake_hub.add_repo("acme/tiny-pair", saved)
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "dataset": "revision-v1"}))
    fake_hub.add_repo("acme/tiny-pair", folder, revision="v1")

    _assert_same_pair(pair, AuditedPair.from_pretrained("acme/tiny-pair"), synthetic.test_images[:16])
    assert AuditedPair.from_pretrained("acme/tiny-pair@v1").config.dataset == "revision-v1"
    assert AuditedPair.from_pretrained("acme/tiny-pair", revision="v1").config.dataset == "revision-v1"
    with pytest.raises(FileNotFoundError, match="acme/no-such-pair"):
        AuditedPair.from_pretrained("acme/no-such-pair")
    with pytest.raises(FileNotFoundError, match="no revision 'v9'"):
        AuditedPair.from_pretrained("acme/tiny-pair@v9")
    assert fake_hub.unexpected == []


def test_push_to_hub_then_load_gives_identical_outputs(fake_hub, tiny_pair, synthetic):  # noqa: F811
    pair, _ = tiny_pair
    url = pair.push_to_hub("acme/pushed")
    assert "acme/pushed" in url
    assert {p.name for p in fake_hub.repo_path("acme/pushed").iterdir()} >= {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}
    _assert_same_pair(pair, AuditedPair.from_pretrained("acme/pushed"), synthetic.test_images[:16])
    assert fake_hub.unexpected == []

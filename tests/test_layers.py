"""The library's promises about itself: no UI imports, Hub ids as the Hub spells them, portable configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amint.pair import AuditedPair, check_repo_id

ROOT = Path(__file__).resolve().parents[1]


def test_library_imports_neither_gradio_nor_matplotlib():
    code = ("import amint.pair, amint.verify, amint.audit, amint.evaluate, amint.train, amint.explain, "
            "amint.robustness, amint.edits, sys; print(sorted({'gradio', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("repo_id", ["owner/name.v2", "meta-llama/Llama-3.1-8B", "a-b/c_d"])
def test_valid_hub_ids_with_dots_reach_the_hub(repo_id, monkeypatch):
    assert check_repo_id(repo_id) == repo_id
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline: the Hub's own error, not "not a repo id"
    with pytest.raises(ConnectionError, match="offline or unreachable"):
        AuditedPair.from_pretrained(repo_id, cache_dir=str(Path("/nonexistent-cache")))


@pytest.mark.parametrize("bad", ["a/b/c", "no-slash", "owner/na me", "owner/--x"])
def test_malformed_ids_are_named_as_such(bad):
    with pytest.raises(ValueError, match="Hub repo id"):
        check_repo_id(bad)
    with pytest.raises(FileNotFoundError, match="neither a pair folder nor a Hub repo id"):
        AuditedPair.from_pretrained(bad)


def test_shipped_config_records_no_local_path():
    text = (ROOT / "models" / "fashion-mnist-resnet18" / "config.json").read_text()

    def strings(obj):
        if isinstance(obj, dict):
            for v in obj.values():
                yield from strings(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from strings(v)
        elif isinstance(obj, str):
            yield obj

    paths = [s for s in strings(json.loads(text)) if s.startswith(("/", "~")) or "/tmp" in s or ":\\" in s]
    assert paths == []

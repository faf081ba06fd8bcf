"""The running app against hostile uploads, training faults, a leaked token and a short load test.

Launched in-process like tests/test_app.py (same fixtures) and driven with gradio_client: every case of
tests/data/bad/ through Verify, Audit and Train gets a verdict or a one-line message, and the app keeps
serving afterwards.
"""

from __future__ import annotations

import gc
import logging
import re
import resource
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.data.bad import make_corpus  # noqa: E402
from tests.data.bad.make_corpus import IMAGES, SCORED, ZIPS  # noqa: E402

from .hubserver import DEFAULT_TOKEN, fake_hub  # noqa: E402,F401  (fixture)
from .test_app import AUDIT_VERDICT, VERIFY_DETAILS, _imagefolder_zip, _train_args, app_env, client  # noqa: E402,F401

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
ROOT = Path(__file__).resolve().parents[1]
# The zips the Train tab must refuse (the 10,000-image zip is a valid dataset there: trained on below).
TRAIN_REFUSALS = {name: expected for name, expected in ZIPS.items()
                  if expected != SCORED and name != "large_10000_images.zip"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return make_corpus.paths(tmp_path_factory.mktemp("bad-large"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _still_serving(client: Client, example: Path) -> None:
    details = client.predict("tiny", handle_file(str(example)), api_name="/verify")[VERIFY_DETAILS]
    assert details["is_member"] in (True, False)


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


def test_verify_every_image_case(client, app_env, corpus):
    root, examples = app_env
    before = _peak_rss_mb()
    for name, expected in IMAGES.items():
        if expected == SCORED:
            details = client.predict("tiny", handle_file(str(corpus[name])), api_name="/verify")[VERIFY_DETAILS]
            assert details["file"] == name and 0 <= details["member_probability"] <= 1, name
        else:
            with pytest.raises(AppError) as err:
                client.predict("tiny", handle_file(str(corpus[name])), api_name="/verify")
            message = str(err.value)
            assert re.search(expected, message) and "\n" not in message.strip(), (name, message)
    assert _peak_rss_mb() - before < 400  # no bomb was decoded
    _still_serving(client, root / "examples" / examples["examples"][0]["file"])


def test_audit_every_zip_case_and_the_images_together(client, app_env, corpus):
    root, examples = app_env
    for name, expected in ZIPS.items():
        if expected == SCORED:
            verdict = client.predict("tiny", [handle_file(str(corpus[name]))], api_name="/audit")[AUDIT_VERDICT]
            assert verdict["n_images"] == 2 and verdict["n_unreadable"] == 0
        else:
            with pytest.raises(AppError) as err:
                client.predict("tiny", [handle_file(str(corpus[name]))], api_name="/audit")
            assert re.search(expected, str(err.value)), (name, str(err.value))
    images = [n for n in IMAGES if not n.startswith("large_51mb")]  # one 51 MB upload is enough (Verify)
    _, _, table, _, verdict, *_ = client.predict("tiny", [handle_file(str(corpus[n])) for n in images],
                                                 api_name="/audit")
    refused = [n for n in images if IMAGES[n] != SCORED]
    # identical inputs (the same picture under two names) count once in the test: n_images + n_duplicates
    assert verdict["n_unreadable"] == len(refused)
    assert verdict["n_images"] + verdict["n_duplicates"] == len(images) - len(refused)
    assert 0 < verdict["n_duplicates"] < verdict["n_images"]
    headers = table["headers"]
    rows = {row[headers.index("file")]: row for row in table["data"]}
    for name in refused:
        row = rows[name]
        assert row[1] == "could not be read" and re.search(IMAGES[name], row[headers.index("predicted class or error")]), row
    _still_serving(client, root / "examples" / examples["examples"][0]["file"])


def test_train_refuses_hostile_zips_and_writes_nothing_outside(client, app_env, corpus, tmp_path):
    root, examples = app_env
    watched = [root / "models", root / "examples"]
    before = {str(f): _files_under(f) for f in watched}
    for name, expected in TRAIN_REFUSALS.items():
        args = _train_args(corpus[name], 1, f"hostile-{Path(name).stem}")
        with pytest.raises(AppError) as err:
            client.predict(*args, api_name="/train")
        message = str(err.value)
        expected = expected.replace("No images found", "holds no images").replace(
            "zips inside zips are not opened", "holds no images")
        assert re.search(expected, message), (name, message)
    assert {str(f): _files_under(f) for f in watched} == before
    assert not list(Path("/tmp").glob("evil_amint_*")) and not list(root.rglob("evil_amint_*"))
    assert not list(ROOT.rglob("evil_amint_*"))
    uploads = root / "uploads"
    assert not uploads.is_dir() or len(list(uploads.iterdir())) <= 3
    _still_serving(client, root / "examples" / examples["examples"][0]["file"])


def test_train_accepts_a_zip_of_10000_tiny_images(client, app_env, corpus):
    """A real dataset may be that large: it is unpacked (then the run stops at the taken name, to stay quick)."""
    root, _ = app_env
    with pytest.raises(AppError, match="already exists"):
        client.predict(*_train_args(corpus["large_10000_images.zip"], 1, "tiny"), api_name="/train")
    unpacked = [d for d in (root / "uploads").iterdir() if (d / ".complete").is_file()]
    assert any(len(list(d.rglob("*.png"))) == 10_000 for d in unpacked)
    assert len(list((root / "uploads").iterdir())) <= 3  # unpacked datasets kept: bounded


def test_training_skips_bad_images_in_a_dataset(client, app_env, corpus, tmp_path):
    """Every hostile image inside an otherwise good dataset: skipped with a warning, the run completes."""
    root, _ = app_env
    upload = _imagefolder_zip(tmp_path / "shapes.zip")
    with zipfile.ZipFile(upload, "a") as zf:
        for name in IMAGES:
            if not name.startswith("large_51mb"):
                zf.write(corpus[name], f"shapes/top-left/bad_{name}")
    status, _, log, *_ = client.predict(*_train_args(upload, 1, "with-bad-images"), api_name="/train")
    assert "Done" in status, (status, log)
    assert (root / "models" / "with-bad-images" / "config.json").is_file()


def test_an_exception_in_training_is_shown_and_the_app_keeps_serving(client, app_env, tmp_path, monkeypatch):
    from amint.ui import train as train_tab

    root, examples = app_env

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train_tab, "_run_training", out_of_memory)
    upload = _imagefolder_zip(tmp_path / "shapes.zip")
    status, _, log, *_ = client.predict(*_train_args(upload, 1, "will-fail"), api_name="/train")
    assert status.startswith("**Training failed:** CUDA out of memory") and "failed: RuntimeError" in log
    assert not (root / "models" / "will-fail").exists() and not list((root / "models").glob(".*"))
    assert not train_tab.SLOT.busy
    _still_serving(client, root / "examples" / examples["examples"][0]["file"])


def _live_pairs() -> int:
    from amint.pair import AuditedPair

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is AuditedPair)  # type(): no lazy-module lookups


def test_stop_mid_epoch_leaves_nothing_and_frees_the_run(client, app_env, tmp_path):
    root, _ = app_env
    upload = _imagefolder_zip(tmp_path / "shapes.zip", per_class=100)
    live_before = _live_pairs()
    args = _train_args(upload, 50, "stopped-mid-epoch")
    args[9] = 200  # members: an epoch of 13 steps (batch 16), so the stop lands inside one
    job = client.submit(*args, api_name="/train")
    deadline = time.time() + 120
    while time.time() < deadline and not any("Training" in (o[0] or "") for o in job.outputs()):
        time.sleep(0.05)
    assert "Stopping" in client.predict(api_name="/stop")
    status, _, log, *_ = job.result(timeout=120)
    assert "Stopped" in status and re.search(r"stopped at \w+ epoch \d+, step \d+", log), log
    _, dropdown = client.predict("tiny", api_name="/load_pair")
    assert "stopped-mid-epoch" not in [value for _, value in dropdown["choices"]]
    assert not (root / "models" / "stopped-mid-epoch").exists() and not list((root / "models").glob(".*"))
    assert not any(t.name.startswith("train-") for t in threading.enumerate())
    assert _live_pairs() <= live_before  # the stopped run's pair was released
    status, *_ = client.predict(*_train_args(upload, 1, "after-the-stop"), api_name="/train")
    assert "Done" in status


def test_the_hub_token_never_appears(client, app_env, fake_hub, tmp_path, caplog, capfd, monkeypatch):  # noqa: F811
    """Publish (accepted, and refused by an error that quotes the token), train with HF_TOKEN set, then grep
    every place a token could leak: messages, the log, the page, saved files, stdout/stderr and logging."""
    from huggingface_hub import HfApi

    root, _ = app_env
    caplog.set_level(logging.DEBUG)
    wrong = "hf_wrong_token_that_must_not_leak_987"
    seen = [client.predict("tiny", "acme/token-test", DEFAULT_TOKEN, False, api_name="/publish")]
    real_create_repo = HfApi.create_repo

    def refuse(self, *args, **kwargs):  # what a careless server error could say
        raise RuntimeError(f"401 Client Error: Unauthorized (token {self.token})")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(AppError) as err:
        client.predict("tiny", "other/forbidden", wrong, False, api_name="/publish")
    monkeypatch.setattr(HfApi, "create_repo", real_create_repo)
    seen.append(str(err.value))
    assert "Unauthorized (token [token hidden])" in seen[-1]
    status, _, log, *_ = client.predict(*_train_args(_imagefolder_zip(tmp_path / "s.zip"), 1, "token-run"),
                                        api_name="/train")
    seen += [status, log]
    base = client.src.rstrip("/")
    for path in ("/", "/config", "/gradio_api/info"):
        with urllib.request.urlopen(base + path) as page:
            seen.append(page.read().decode("utf-8", "replace"))
    files = [p for folder in (root / "models", fake_hub.repo_path("acme/token-test")) for p in folder.rglob("*")
             if p.is_file()]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in files]
    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    for token in (DEFAULT_TOKEN, wrong):
        leaks = [text[:200] for text in seen if token in text]
        assert not leaks, leaks
    assert any(p.name == "config.json" for p in files)

"""The web app end to end: launched in-process on 127.0.0.1 and driven through its API with gradio_client.

The tiny synthetic pair (conftest.tiny_pair) is the app's only local pair; examples, audits and a
tiny training run all use the synthetic benchmark, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gradio = pytest.importorskip("gradio")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image  # noqa: E402

from amint.edits import ADJUSTABLE, EDIT_NAMES  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402
from amint.verify import verify_images  # noqa: E402

from .conftest import served_app, synthetic_benchmark  # noqa: E402
from .hubserver import fake_hub  # noqa: E402,F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [  # raised inside gradio's queue by pandas 3, not by this code
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
N_EACH = 12  # members and non-members sent one by one through /verify
VERIFY_DETAILS = 4  # /verify: model input, verdict, score chart, top classes, details, maps, saliency, why
AUDIT_VERDICT = 4  # /audit: summary, plot, table, CSV, dataset verdict, HTML report, PDF report


def _png(image, path: Path) -> Path:
    Image.fromarray(image[0].numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def app_env(tiny_pair, synthetic, tmp_path_factory):
    """Models folder with the tiny pair, examples made for it, and the env vars that point the app there."""
    import importlib.util

    pair, _ = tiny_pair
    root = tmp_path_factory.mktemp("app")
    pair.save_pretrained(root / "models" / "tiny")
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "examples" / "make_examples.py")
    make_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_examples)
    examples = make_examples.make_examples(pair, root / "examples", "tiny", n_per_side=N_EACH, bench=synthetic)
    env = {"AMINT_MODELS_DIR": str(root / "models"), "AMINT_EXAMPLES_DIR": str(root / "examples"),
           "AMINT_UPLOADS_DIR": str(root / "uploads")}
    saved = {k: os.environ.get(k) for k in [*env, "SPACE_ID"]}
    os.environ.update(env)
    os.environ.pop("SPACE_ID", None)
    yield root, examples
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def client(app_env):
    with served_app() as c:
        yield c


def test_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/load_pair", "/verify", "/verify_edited", "/compare", "/verify_example", "/audit", "/train", "/stop",
            "/publish", "/model_info"} <= names


def test_load_pair_and_bad_repo(client):
    status, _ = client.predict("tiny", api_name="/load_pair")
    assert "tiny" in status and "resnet18" in status
    with pytest.raises(AppError, match="no pair called"):
        client.predict("no such pair", api_name="/load_pair")


def test_verify_matches_ground_truth_rates(client, app_env, tiny_pair):
    root, examples = app_env
    pair, _ = tiny_pair
    files = [root / "examples" / ex["file"] for ex in examples["examples"]]
    truths = [ex["truth"] for ex in examples["examples"]]
    answers = []
    for path in files:
        details = client.predict("tiny", handle_file(str(path)), api_name="/verify")[VERIFY_DETAILS]
        answers.append(details["is_member"])
    # The app says what the library says about the same files...
    expected = [v.is_member for v in verify_images(pair, files)]
    assert answers == expected
    # ...and that flags members far more often than held-out images.
    member_rate = sum(a for a, t in zip(answers, truths) if t == "member") / N_EACH
    nonmember_rate = sum(a for a, t in zip(answers, truths) if t == "nonmember") / N_EACH
    assert member_rate >= nonmember_rate + 0.25, (member_rate, nonmember_rate)


def test_verify_example_says_right_or_wrong(client, app_env):
    out = client.predict(0, api_name="/verify_example")
    verdict_html, details = out[2], out[1 + VERIFY_DETAILS]
    assert details["ground_truth"] == "member"
    assert ("verdict is right" in verdict_html) == details["verdict_correct"]
    assert ("Not a member" in verdict_html) != details["is_member"]


def test_verify_sends_the_verdict_first_then_the_why(client, app_env):
    root, examples = app_env
    job = client.submit("tiny", handle_file(str(root / "examples" / examples["examples"][0]["file"])),
                        api_name="/verify")
    job.result()
    first, last = job.outputs()
    assert first[VERIFY_DETAILS] == last[VERIFY_DETAILS]  # the verdict does not change with the second update
    why = last[-1]
    assert "What decided it" in why and "Covering" in why
    # Two taps: where each responds and what the trace head reads there, then the edit saliency, inline.
    assert why.count('<img src="data:image/png;base64,') == 5 and why.count("alt=") == 5


@pytest.mark.parametrize("edit", [*ADJUSTABLE, *EDIT_NAMES])
def test_verify_edited_for_every_edit(client, app_env, edit):
    root, examples = app_env
    member = next(ex for ex in examples["examples"] if ex["truth"] == "member")
    before, after, words, details = client.predict("tiny", handle_file(str(root / "examples" / member["file"])),
                                                   edit, None, api_name="/verify_edited")
    assert Image.open(before).size == Image.open(after).size  # both as the model sees them
    assert details["edit"] == edit and details["original"]["file"] == member["file"]
    assert details["verdict_holds"] == (details["original"]["is_member"] == details["edited"]["is_member"])
    assert f"aMINT verdict: {'holds' if details['verdict_holds'] else 'changes'}" in words and "<svg" in words
    if edit == "png":  # the exact pixels: the same verdict, the same score up to float32 rounding
        a, b = details["original"], details["edited"]  # (scored as two rows of one batch: their last bits may differ)
        assert b["member_probability"] == pytest.approx(a["member_probability"], abs=1e-5)
        assert details["verdict_holds"] or abs(a["member_probability"] - a["threshold"]) < 1e-5


def test_verify_edited_refuses_a_strength_out_of_range(client, app_env):
    root, examples = app_env
    with pytest.raises(AppError, match="outside 5..100"):
        client.predict("tiny", handle_file(str(root / "examples" / examples["examples"][0]["file"])), "jpeg", 500,
                       api_name="/verify_edited")


def test_compare_two_pairs(client, app_env, tiny_pair, tiny_memory_pair):
    root, examples = app_env
    tiny_memory_pair[0].save_pretrained(root / "models" / "tiny-memory")
    image = handle_file(str(root / "examples" / examples["examples"][0]["file"]))
    page, details = client.predict("tiny", "tiny-memory", image, api_name="/compare")
    assert [p["pair"] for p in details["pairs"]] == ["tiny", "tiny-memory"]
    assert page.count('class="verdict ') == 2 and details["words"] in page.replace("&#x27;", "'")
    with pytest.raises(AppError, match="second pair"):
        client.predict("tiny", "", image, api_name="/compare")


def test_audit_members_vs_nonmembers(client, tiny_pair, synthetic, tmp_path):
    pair, _ = tiny_pair
    split = MembershipSplit.from_config(pair.config.split)
    members = [_png(synthetic.train_images[i], tmp_path / f"m{i}.png") for i in split.eval_members[:60].tolist()]
    nonmembers = [_png(synthetic.test_images[i], tmp_path / f"n{i}.png") for i in split.eval_nonmembers[:60].tolist()]
    archive = tmp_path / "members.zip"  # members as a zip, non-members as separate files: both paths
    with zipfile.ZipFile(archive, "w") as zf:
        for p in members:
            zf.write(p, f"set/{p.name}")
    _, _, table, csv_file, verdict_m, *_ = client.predict("tiny", [handle_file(str(archive))], api_name="/audit")
    _, _, _, _, verdict_n, *_ = client.predict("tiny", [handle_file(str(p)) for p in nonmembers], api_name="/audit")
    assert verdict_m["n_images"] == verdict_n["n_images"] == 60
    assert len(table["data"]) == 60 and Path(csv_file).read_text().count("\n") == 61
    assert verdict_m["n_flagged"] > verdict_n["n_flagged"]
    assert verdict_m["p_value"] < 1e-3 and verdict_m["p_value"] < verdict_n["p_value"] * 1e-3, (verdict_m, verdict_n)


def test_audit_returns_reports_that_name_the_pair(client, app_env, tmp_path):
    root, examples = app_env
    files = [handle_file(str(root / "examples" / ex["file"])) for ex in examples["examples"][:6]]
    *_, verdict, html_file, pdf_file = client.predict("tiny", files, api_name="/audit")
    page = Path(html_file).read_text()
    weights = hashlib.sha256((root / "models" / "tiny" / "model.safetensors").read_bytes()).hexdigest()
    assert weights in page and f"{verdict['n_flagged']}</b> of {verdict['n_images']}" in page
    assert str(root) not in page and "<code>tiny</code>" in page  # the folder's name; its path stays on the server
    assert page.count("data:image/png;base64,") == 1 + 6  # the score plot and one thumbnail per image
    assert Path(pdf_file).read_bytes().startswith(b"%PDF")


def test_bad_upload_gets_a_message(client, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not an image")
    with pytest.raises(AppError, match="not a readable image"):
        client.predict("tiny", handle_file(str(fake)), api_name="/verify")
    # An audit with one bad file keeps the good ones and reports the bad one in its row.
    good = _png(synthetic_benchmark(n_train=12, n_test=12, seed=3).test_images[0], tmp_path / "good.png")
    _, _, table, _, verdict, *_ = client.predict("tiny", [handle_file(str(fake)), handle_file(str(good))],
                                                 api_name="/audit")
    assert verdict["n_images"] == 1 and verdict["n_unreadable"] == 1
    assert any("could not be read" in str(row) for row in table["data"])
    # The app is still fine afterwards.
    assert client.predict("tiny", api_name="/load_pair")[0]


def _imagefolder_zip(path: Path, per_class: int = 40) -> Path:
    bench = synthetic_benchmark(n_train=per_class * 6, n_test=8, seed=1)
    with zipfile.ZipFile(path, "w") as zf:
        counts: dict[int, int] = {}
        for image, label in zip(bench.train_images, bench.train_labels.tolist()):
            if counts.get(label, 0) >= per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            png = path.parent / "tmp.png"
            _png(image, png)
            zf.write(png, f"shapes/{bench.class_names[label]}/{counts[label]:03d}.png")
    return path


TRAIN_ARGS = dict(dataset="upload", backbone="resnet18", setup="entry", batch_size=16, mint_weight=1.0, seed=0,
                  n_members=48, n_external=48, n_calibration=16, backbone_options='{"channels": [16, 16, 32, 32]}')


def _train_args(upload, epochs: int, name: str) -> list:
    a = TRAIN_ARGS
    return [a["dataset"], handle_file(str(upload)), a["backbone"], a["setup"], epochs, 1, a["batch_size"],
            a["mint_weight"], a["seed"], a["n_members"], a["n_external"], a["n_calibration"],
            a["backbone_options"], name]


def test_train_then_select(client, app_env, tmp_path):
    root, _ = app_env
    upload = _imagefolder_zip(tmp_path / "shapes.zip")
    status, _, log, _, _, dropdown, trained = client.predict(*_train_args(upload, 1, "trained-in-test"),
                                                                   api_name="/train")
    assert "Done" in status, (status, log)
    assert trained == "trained-in-test" and dropdown["value"] == "trained-in-test"
    assert "trained-in-test" in [value for _, value in dropdown["choices"]]
    assert (root / "models" / "trained-in-test" / "config.json").is_file()
    assert not list((root / "models").glob(".training-*"))
    summary, _ = client.predict("trained-in-test", api_name="/load_pair")
    assert "images from shapes" in summary
    card, *_ = client.predict("trained-in-test", api_name="/model_info")
    assert card.startswith("# aMINT pair")
    with pytest.raises(AppError, match="already exists"):
        client.predict(*_train_args(upload, 1, "trained-in-test"), api_name="/train")


def test_stop_cancels_and_one_job_at_a_time(client, app_env, tmp_path):
    root, _ = app_env
    upload = _imagefolder_zip(tmp_path / "shapes.zip")
    job = client.submit(*_train_args(upload, 100, "to-be-stopped"), api_name="/train")
    deadline = time.time() + 60
    while time.time() < deadline and not any("epoch 1/" in (o[2] or "") for o in job.outputs()):
        time.sleep(0.2)
    assert any("epoch 1/" in (o[2] or "") for o in job.outputs()), job.outputs()
    with pytest.raises(AppError, match="already in progress"):
        client.predict(*_train_args(upload, 1, "second-job"), api_name="/train")
    assert "Stopping" in client.predict(api_name="/stop")
    status = job.result(timeout=60)[0]
    assert "Stopped" in status
    assert not (root / "models" / "to-be-stopped").exists()
    assert not list((root / "models").glob(".training-*"))
    assert client.predict(api_name="/stop") == "No training is running."


def test_publish_then_load_from_hub(client, fake_hub):
    from tests.hubserver import DEFAULT_TOKEN

    message = client.predict("tiny", "acme/tiny-pair", DEFAULT_TOKEN, False, api_name="/publish")
    assert "Published" in message and (fake_hub.repo_path("acme/tiny-pair") / "config.json").is_file()
    for source in ("acme/tiny-pair", "acme/tiny-pair@main"):
        status, dropdown = client.predict(source, api_name="/load_pair")
        assert source in status and dropdown["value"] == source
        assert source in [value for _, value in dropdown["choices"]]
    with pytest.raises(AppError, match="No Hub repo"):
        client.predict("acme/no-such-pair", api_name="/load_pair")
    with pytest.raises(AppError, match="owner/name"):
        client.predict("tiny", "not a repo id", DEFAULT_TOKEN, False, api_name="/publish")


def test_publish_without_external_tables_says_what_it_left_out(client, app_env, fake_hub,  # noqa: F811
                                                                tiny_memory_pair, synthetic, monkeypatch):
    from amint import publish
    from amint.pair import AuditedPair
    from amint.ui.train import _reveal_notice
    from tests.hubserver import DEFAULT_TOKEN

    root, _ = app_env
    tiny_memory_pair[0].save_pretrained(root / "models" / "tiny-memory")
    monkeypatch.setattr(publish, "load_benchmark", lambda name, root=None, image_size=None: synthetic)
    message = client.predict("tiny-memory", "acme/tiny-no-ext", DEFAULT_TOKEN, False, "externals", api_name="/publish")
    assert "without the external tables" in message
    pushed = AuditedPair.from_pretrained("acme/tiny-no-ext")
    assert pushed.config.left_out == "externals" and all(m.externals is None for m in pushed.head.memories.values())
    with pytest.raises(AppError, match="no hashed memories"):
        client.predict("tiny", "acme/x", DEFAULT_TOKEN, False, "memories", api_name="/publish")
    assert "membership oracle" in _reveal_notice("") and "push --no-externals" in _reveal_notice("")
    assert "no membership by lookup" in _reveal_notice("memories")


def test_public_deployment_turns_training_off(monkeypatch):
    from amint.ui import train as train_tab

    monkeypatch.setenv("SPACE_ID", "someone/amint-demo")
    monkeypatch.delenv("AMINT_ENABLE_TRAINING", raising=False)
    with pytest.raises(gradio.Error, match="turned off"):
        next(train_tab.train("fashion-mnist", None, "resnet18", "middle", 1, 0, 16, 1.0, 0, None, None, None, "", ""))
    with pytest.raises(gradio.Error, match="turned off"):
        train_tab.publish("tiny", "acme/x", "token")
    monkeypatch.setenv("AMINT_ENABLE_TRAINING", "1")
    assert train_tab.training_enabled()

"""Hostile and broken uploads through the library and the CLI (tests/data/bad/; the app: test_app_safety.py).

Every case gets a verdict or one line that names the file and what is wrong; no bomb is decoded, no
zip writes outside its folder.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from amint import cli
from amint.audit import audit_images, expand_uploads
from amint.pair import AuditedPair, PairConfig
from amint.preprocess import preprocess
from amint.uploads import (MAX_AUDIT_FILES, UploadError, extract_images, limits_words, prune_folder,
                           zip_image_entries)
from amint.verify import ImageError, Verdict, load_image, verify_images
from tests.data.bad import make_corpus
from tests.data.bad.make_corpus import IMAGES, SCORED, ZIPS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return make_corpus.paths(tmp_path_factory.mktemp("bad-large"))


@pytest.fixture(scope="module")
def color_pair(tmp_path_factory) -> tuple[AuditedPair, Path]:
    """An untrained RGB pair (a verdict needs no training), saved for the CLI."""
    cfg = PairConfig(backbone="resnet18", num_classes=4, in_chans=3, image_size=16, mean=[0.5] * 3, std=[0.25] * 3,
                     class_names=list("abcd"), backbone_kwargs={"channels": [8, 16, 16, 16]},
                     head={"trace": {"width": 8, "hidden": 16}, "memories": {}})
    pair = AuditedPair(cfg).eval()
    folder = pair.save_pretrained(tmp_path_factory.mktemp("color") / "pair")
    return pair, folder


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _assert_outcome(name: str, result, expected: str) -> None:
    if expected == SCORED:
        assert isinstance(result, Verdict), f"{name}: {result}"
        assert 0.0 <= result.member_probability <= 1.0
    else:
        assert isinstance(result, ImageError), f"{name} was scored, expected a refusal"
        message = str(result)
        assert "\n" not in message and name in message, message
        assert re.search(expected, message), (name, message)


def test_corpus_has_the_cases_the_issue_lists():
    assert len(IMAGES) + len(ZIPS) >= 25
    assert all(p.is_file() for p in make_corpus.HERE.iterdir() if p.suffix != ".py")


def test_every_image_case_through_the_library(tiny_pair, corpus):
    pair, _ = tiny_pair
    names = list(IMAGES)
    before = _peak_rss_mb()
    results = verify_images(pair, [corpus[n] for n in names], names=names)
    for name, result in zip(names, results):
        _assert_outcome(name, result, IMAGES[name])
    # The bombs claim 1.6 and 10 gigapixels: none was decoded, so the peak barely moved.
    assert _peak_rss_mb() - before < 300


def test_gray_into_a_colour_pair_and_colour_into_a_gray_pair(tiny_pair, color_pair, corpus):
    gray_pair, color = tiny_pair[0], color_pair[0]
    for pair, name, channels in ((color, "gray.png", 3), (gray_pair, "color.png", 1)):
        x = preprocess(load_image(corpus[name]), pair.config)
        assert tuple(x.shape) == (channels, 16, 16)
        assert isinstance(verify_images(pair, [corpus[name]])[0], Verdict)


def test_exif_rotation_is_applied_before_scoring(tiny_pair, corpus):
    pair, _ = tiny_pair
    with Image.open(corpus["exif_rotated.jpg"]) as raw:
        upright = ImageOps.exif_transpose(raw)
        assert raw.size == (36, 20) and upright.size == (20, 36)
    assert np.array_equal(preprocess(load_image(corpus["exif_rotated.jpg"]), pair.config).numpy(),
                          preprocess(upright, pair.config).numpy())


def test_extreme_aspect_ratio_resamples_only_the_centre(tiny_pair):
    pair, _ = tiny_pair
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1, 40000), dtype=np.uint8))
    before = _peak_rss_mb()
    x = preprocess(strip, pair.config)
    assert tuple(x.shape) == (1, 16, 16)
    assert _peak_rss_mb() - before < 100  # resize-then-crop would have made a 640,000 x 16 image first


def test_preprocess_is_unchanged_for_ordinary_images(tiny_pair):
    """The box resize gives the very pixels resize-then-crop gave (non-square and square inputs)."""
    pair, _ = tiny_pair
    rng = np.random.default_rng(1)
    for shape in ((40, 90), (90, 40), (16, 16), (17, 16), (300, 300)):
        im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        w, h = im.size
        s = 16 / min(w, h)
        nw, nh = max(16, round(w * s)), max(16, round(h * s))
        left, top = (nw - 16) // 2, (nh - 16) // 2
        old = im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + 16, top + 16))
        assert np.array_equal(preprocess(im, pair.config)[0].numpy(), np.asarray(old)), shape


@pytest.mark.parametrize("name", list(ZIPS))
def test_every_zip_case_through_the_library(name, tiny_pair, corpus, tmp_path):
    pair, _ = tiny_pair
    expected = ZIPS[name]
    if expected == SCORED:
        items = expand_uploads([corpus[name]])
        assert sorted(n for n, _ in items) == [f"{name}/set/a.png", f"{name}/set/b.png"]
        result = audit_images(pair, items)
        assert result.verdict.n_images == 2 and not any(r.error for r in result.rows)
        return
    try:
        items = expand_uploads([corpus[name]])
    except (UploadError, ImageError) as e:
        message = str(e)
    else:
        assert not items, f"{name} gave {len(items)} items"
        message = "No images found"  # what the app and the CLI say for an empty list
    assert "\n" not in message and re.search(expected, message), message


def test_zip_entries_are_read_one_at_a_time(corpus):
    entries = zip_image_entries(corpus["nonimage_members.zip"])
    assert all(not isinstance(src, bytes) for _, src in entries)  # lazy: nothing inflated yet
    assert load_image(entries[0][1]).size == (28, 28)


def test_extraction_writes_only_images_inside_the_target(corpus, tmp_path):
    dest = tmp_path / "out" / "dataset"
    for name in ("traversal.zip", "absolute.zip", "symlink.zip", "large_bomb.zip"):
        with pytest.raises(UploadError, match=ZIPS[name]):
            extract_images(corpus[name], dest)
    assert not list(tmp_path.rglob("evil_amint_*")) and not Path("/tmp/evil_amint_absolute.png").exists()
    assert extract_images(corpus["nonimage_members.zip"], dest) == 2
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["set/a.png", "set/b.png"]
    # A training zip may be a real dataset: 10,000 images are fine there (the audit limit is lower).
    assert extract_images(corpus["large_10000_images.zip"], tmp_path / "many") == 10_000
    assert 10_000 > MAX_AUDIT_FILES


def test_a_zip_that_lies_about_its_sizes_is_not_inflated_past_them(tmp_path):
    """The header's size bounds what zipfile will produce: a forged small size ends in a CRC error."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/a.png", b"\0" * 100_000)
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (100).to_bytes(4, "little")  # central directory: uncompressed size 100
    path.write_bytes(bytes(data))
    with pytest.raises((zipfile.BadZipFile, UploadError, ImageError, OSError)):
        for _, src in zip_image_entries(path):
            load_image(src)


def test_prune_folder_keeps_the_newest(tmp_path):
    import os
    import time

    for i in range(5):
        (tmp_path / f"d{i}").mkdir()
        os.utime(tmp_path / f"d{i}", (time.time() - 100 + i, time.time() - 100 + i))
    prune_folder(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d3", "d4"]


def test_limits_are_stated_in_words():
    words = limits_words()
    assert "megapixels" in words and "5,000 images per audit" in words and "100x" in words


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_verify_scores_the_good_and_names_the_bad_in_one_line_each(tiny_pair, corpus):
    _, folder = tiny_pair
    names = list(IMAGES)
    proc = subprocess.run([sys.executable, "-m", "amint", "verify", str(folder), *[str(corpus[n]) for n in names],
                           "--json", "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == cli.EXIT_BAD_INPUT, proc.stderr
    scored = {Path(v["file"]).name for v in json.loads(proc.stdout)}
    assert scored == {n for n in names if IMAGES[n] == SCORED}
    errors = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    for name in (n for n in names if IMAGES[n] != SCORED):
        line = next(e for e in errors if name in e)
        assert line.startswith("amint: error: ") and re.search(IMAGES[name], line), line
    assert len(errors) == sum(1 for n in names if IMAGES[n] != SCORED)


def test_cli_verify_gray_into_a_colour_pair(color_pair, corpus, capsys):
    _, folder = color_pair
    assert cli.main(["verify", str(folder), str(corpus["gray.png"]), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["file"].endswith("gray.png")


@pytest.mark.parametrize("name", list(ZIPS))
def test_cli_audit_every_zip_case(name, tiny_pair, corpus, capsys):
    _, folder = tiny_pair
    code = cli.main(["audit", str(folder), str(corpus[name]), "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    if ZIPS[name] == SCORED:
        assert code == 0 and json.loads(captured.out)["n_images"] == 2
    else:
        assert code == cli.EXIT_ERROR and "Traceback" not in captured.err
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("amint: error: "), captured.err
        assert re.search(ZIPS[name].replace("No images found", "no images found"), lines[0]), lines[0]

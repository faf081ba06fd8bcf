"""amint.verify: loading, preprocessing, verdicts and their words."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from amint.data import MembershipSplit
from amint.evaluate import score_images
from amint.pair import PairConfig
from amint.verify import ImageError, Verdict, decision_words, load_image, preprocess, verify_image, verify_images


def _config(in_chans: int = 1, image_size: int = 16) -> PairConfig:
    return PairConfig(backbone="resnet18", num_classes=2, in_chans=in_chans, image_size=image_size,
                      mean=[0.5] * in_chans, std=[0.5] * in_chans, class_names=["a", "b"])


def _png(array: np.ndarray, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **save_kwargs)
    return buf.getvalue()


def _as_arrays(images: torch.Tensor) -> list[np.ndarray]:
    return [x[0].numpy() for x in images]  # (1, H, W) uint8 -> HxW


@pytest.fixture(scope="module")
def split(tiny_pair):
    return MembershipSplit.from_config(tiny_pair[0].config.split)


def test_members_are_flagged_far_more_often_than_never_seen_images(tiny_pair, synthetic, split):
    pair, _ = tiny_pair
    members = _as_arrays(synthetic.train_images[split.eval_members])
    never_seen = [_png(a) for a in _as_arrays(synthetic.test_images[:100])]  # through the file-decoding path
    member_rate = np.mean([v.is_member for v in verify_images(pair, members)])
    never_seen_rate = np.mean([v.is_member for v in verify_images(pair, never_seen)])
    assert member_rate > never_seen_rate + 0.25, (member_rate, never_seen_rate)


def test_native_size_image_reaches_the_model_unchanged(tiny_pair, synthetic):
    pair, _ = tiny_pair
    images = synthetic.test_images[:8]
    verdicts = verify_images(pair, [_png(a) for a in _as_arrays(images)], batch_size=3)
    expected = score_images(pair, images).member_probability
    got = torch.tensor([v.member_probability for v in verdicts], dtype=torch.float64)
    assert torch.allclose(got, expected, atol=1e-6)
    assert np.array_equal(verdicts[0].model_input, images[0, 0].numpy())


def test_verdict_fields_and_json(tiny_pair, synthetic):
    pair, _ = tiny_pair
    v = verify_image(pair, synthetic.test_images[0, 0].numpy())
    assert v.threshold == pair.config.threshold and v.threshold_fpr == pair.config.threshold_fpr
    assert v.is_member == (v.member_probability >= v.threshold)
    assert len(v.top_classes) == 4  # min(5, number of classes)
    probs = [p for _, p in v.top_classes]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    assert (v.predicted_class, v.class_probability) == v.top_classes[0]
    assert v.model_input.shape == (16, 16) and v.model_input.dtype == np.uint8
    d = json.loads(json.dumps(v.to_dict(file="x.png")))
    assert d["file"] == "x.png" and d["top_classes"][0] == [v.predicted_class, v.class_probability]
    # A pair without memories has no fingerprint: its fields are absent, not null.
    assert set(d) == {"file", "member_probability", "is_member", "threshold", "threshold_fpr", "reading", "trace_signal",
                      "trace_cal_auc", "predicted_class", "class_probability", "top_classes", "words"}
    assert d["reading"] == "amint" and d["trace_cal_auc"] == pair.readings["amint"].cal_auc
    assert d["words"] == [decision_words(v)]


def test_bad_file_is_an_image_error_naming_it(tmp_path):
    bad = tmp_path / "photo.txt"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match=r"^photo\.txt is not a readable image \("):
        load_image(bad)
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    truncated = _png(noise)[:500]
    with pytest.raises(ImageError, match="upload.png is not a readable image"):
        load_image(truncated, name="upload.png")
    with pytest.raises(ImageError, match="missing.png is not a readable image"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="array"):
        load_image(np.zeros((4, 4, 7), np.uint8))


def test_a_bad_item_fails_alone_in_its_slot(tiny_pair, synthetic, tmp_path):
    pair, _ = tiny_pair
    (tmp_path / "photo.txt").write_text("hello")
    good = _as_arrays(synthetic.test_images[:2])
    calls = []
    results = verify_images(pair, [good[0], tmp_path / "photo.txt", good[1]], batch_size=2,
                            progress=lambda done, total: calls.append((done, total)))
    assert isinstance(results[0], Verdict) and isinstance(results[2], Verdict)
    assert isinstance(results[1], ImageError) and "photo.txt" in str(results[1])
    assert results[2].member_probability == pytest.approx(verify_image(pair, good[1]).member_probability, abs=1e-6)
    assert calls == [(2, 3), (3, 3)]
    with pytest.raises(ImageError, match="photo.txt"):
        verify_image(pair, tmp_path / "photo.txt")


def test_names_override_sources_in_errors(tiny_pair):
    pair, _ = tiny_pair
    [err] = verify_images(pair, [b"junk"], names=["holiday.zip/cat.png"])
    assert str(err).startswith("holiday.zip/cat.png is not a readable image")


def test_preprocess_resizes_short_side_and_centre_crops():
    # 64 wide, 32 high: white in the middle half, black on both sides; the centre crop keeps only white.
    a = np.zeros((32, 64), np.uint8)
    a[:, 16:48] = 255
    x = preprocess(Image.fromarray(a), _config(image_size=16))
    assert x.shape == (1, 16, 16) and x.dtype == torch.uint8
    assert x[:, :, 1:-1].float().mean() > 250
    tall = preprocess(Image.fromarray(a.T.copy()), _config(image_size=16))
    assert tall.shape == (1, 16, 16) and tall[:, 1:-1, :].float().mean() > 250


def test_preprocess_channels_and_transparency():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255
    gray = preprocess(Image.fromarray(rgb), _config(in_chans=1))
    assert gray.shape == (1, 16, 16) and 70 <= int(gray[0, 0, 0]) <= 80  # red's luma
    assert preprocess(Image.fromarray(rgb[..., 0]), _config(in_chans=3)).shape == (3, 16, 16)
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    assert torch.all(preprocess(clear, _config(in_chans=3)) == 255)  # transparent -> white page, not black
    deep = Image.fromarray(np.full((16, 16), 65535, np.uint16))
    assert torch.all(preprocess(deep, _config()) == 255)  # 16-bit white stays white


def test_exif_orientation_is_applied():
    a = np.zeros((10, 20), np.uint8)  # 20 wide, 10 high: left half black, right half white
    a[:, 10:] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    loaded = load_image(_png(a, exif=exif.tobytes()))
    assert loaded.size == (10, 20)  # upright: now 10 wide, 20 high
    x = preprocess(loaded, _config(image_size=10))[0].float()
    assert x[:5].mean() < 10 and x[-5:].mean() > 245  # the left edge became the top
    direct = Image.open(io.BytesIO(_png(a, exif=exif.tobytes())))  # a PIL image given directly is turned too
    assert torch.equal(preprocess(direct, _config(image_size=10)), preprocess(loaded, _config(image_size=10)))


def _verdict(p: float, threshold: float = 0.5, fpr: float | None = 0.05, trace_auc: float | None = None) -> Verdict:
    return Verdict(p, p >= threshold, threshold, fpr, "a", 0.9, [("a", 0.9)], np.zeros((2, 2), np.uint8),
                   trace_cal_auc=trace_auc)


def test_decision_words():
    member = decision_words(_verdict(0.93))
    assert member.startswith("Member (aMINT verdict)") and "1 in 20" in member and "0.93" in member
    assert "1 in 3" in decision_words(_verdict(0.93, fpr=0.31))
    assert "not measured" in decision_words(_verdict(0.93, fpr=None))
    assert decision_words(_verdict(0.2)).startswith("Not a member (aMINT verdict)")
    # The model's trace is claimed only where the trace head carries signal: otherwise the words say so.
    quiet = decision_words(_verdict(0.93, trace_auc=0.53))
    assert "shows no detectable trace" in quiet and "AUC 0.53" in quiet
    assert "no detectable trace" not in decision_words(_verdict(0.93, trace_auc=0.8))


def test_two_threads_on_one_pair_get_one_threads_answers(tiny_memory_pair, synthetic):
    # One forward returns everything (no hook state), so a shared pair needs no lock.
    from concurrent.futures import ThreadPoolExecutor

    pair, _ = tiny_memory_pair
    images = [synthetic.test_images[i, 0].numpy() for i in range(24)] + \
             [synthetic.train_images[i, 0].numpy() for i in range(24)]
    def both(im):
        v = verify_image(pair, im)
        return v.member_probability, v.fingerprint_probability, v.fingerprint_match

    alone = [both(im) for im in images]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(both, images * 3))
    assert together == alone * 3

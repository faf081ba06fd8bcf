"""amint.audit: uploads (files and zips), per-image rows, the dataset-level test and the CSV."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from amint.audit import audit_images, expand_uploads
from amint.uploads import UploadError
from amint.data import MembershipSplit


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _items(images, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i}.png", _png(x[0].numpy())) for i, x in enumerate(images)]


def test_expand_uploads_walks_zips_and_keeps_plain_files(tmp_path):
    image = _png(np.zeros((4, 4), np.uint8))
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", image)
        zf.writestr("sub/b.JPG", b"not really a jpeg")  # kept by extension; fails later in its own row
        zf.writestr("sub/", b"")
        zf.writestr("__MACOSX/sub/._b.JPG", b"resource fork")
        zf.writestr("sub/.hidden.png", image)
        zf.writestr("notes.txt", b"text")
    (tmp_path / "c.png").write_bytes(image)
    (tmp_path / "photo.txt").write_text("x")
    items = expand_uploads([tmp_path / "c.png", str(archive), tmp_path / "photo.txt"])
    assert [name for name, _ in items] == ["c.png", "set.zip/a.png", "set.zip/sub/b.JPG", "photo.txt"]
    # Zip entries are read when decoded, not when listed: an audit holds one at a time.
    assert items[1][1].read_bytes() == image and items[0][1] == tmp_path / "c.png"


def test_corrupt_zip_is_an_upload_error_naming_it(tmp_path):
    bad = tmp_path / "holiday.zip"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(UploadError, match="holiday.zip is not a readable zip archive"):
        expand_uploads([bad])


def test_audit_rows_csv_and_table(tiny_pair, synthetic, tmp_path):
    pair, _ = tiny_pair
    items = _items(synthetic.test_images[:3], "img") + [("broken.png", b"nope")]
    progress = []
    result = audit_images(pair, items, batch_size=2, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (4, 4)
    assert [r.file for r in result.rows] == ["img0.png", "img1.png", "img2.png", "broken.png"]
    broken = result.rows[3]
    assert broken.member_probability is None and broken.is_member is None and broken.thumbnail is None
    assert broken.error.startswith("broken.png is not a readable image")
    assert result.rows[0].thumbnail.shape == (16, 16) and result.rows[0].error is None
    assert result.scores == [r.member_probability for r in result.rows[:3]]
    assert result.dataset.n_images == 3  # only readable images enter the dataset test
    assert result.dataset.n_flagged == sum(r.is_member for r in result.rows[:3])

    with (result.to_csv(tmp_path / "audit.csv")).open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "member_probability", "is_member", "fingerprint_probability", "fingerprint_is_member",
                       "predicted_class", "error"]
    assert len(rows) == 5 and rows[4][0] == "broken.png" and rows[4][1] == "" and "not a readable" in rows[4][6]
    assert rows[1][3] == rows[1][4] == "" and result.fingerprint is None  # this pair has no memories
    assert float(rows[1][1]) == pytest.approx(result.rows[0].member_probability, abs=1e-6)

    table = result.table()
    assert table[3][:3] == ["broken.png", None, "unreadable"]
    assert table[0][2] in ("member", "not a member") and table[0][1] == round(result.scores[0], 4)


def test_dataset_test_separates_training_set_from_never_seen_set(tiny_pair, synthetic):
    pair, _ = tiny_pair
    split = MembershipSplit.from_config(pair.config.split)
    members = audit_images(pair, _items(synthetic.train_images[split.eval_members], "m")).dataset
    never_seen = audit_images(pair, _items(synthetic.test_images[:100], "t")).dataset
    assert members.n_images == never_seen.n_images == 100
    assert members.p_value < 1e-8, members
    assert never_seen.p_value > 1e-3, never_seen
    assert "Very strong evidence" in members.reading


def test_identical_inputs_count_once_and_a_known_family_uses_its_own_bound(tiny_pair, synthetic):
    pair, _ = tiny_pair
    split = MembershipSplit.from_config(pair.config.split)
    member = _items(synthetic.train_images[split.eval_members[:1]], "m")[0][1]
    # One member uploaded ten times (as PNG and as a different file name) is one image to the test.
    items = [(f"copy{i}.png", member) for i in range(10)] + _items(synthetic.test_images[:20], "t")
    result = audit_images(pair, items)
    v = result.dataset
    assert (v.n_images, v.n_duplicates) == (21, 9) and len(result.scores) == 30
    assert v.n_flagged == sum(r.is_member for r in result.rows[9:])
    assert "9 identical copies" in v.reading
    record = pair.readings["amint"].fpr_record
    assert v.fpr == pair.config.threshold_fpr == record.bound and v.null.family == record.worst_family
    own = audit_images(pair, items, family="exact").dataset
    assert own.fpr == record.per_family["exact"].bound and own.null.family == "exact"
    with pytest.raises(ValueError, match="Unknown edit family|No false-positive rate"):
        audit_images(pair, items, family="rotate90")

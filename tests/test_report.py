"""Audit reports: what they say, that they open (HTML, and PDF rendered by pdftoppm), and the CLI that writes them."""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amint.audit import audit_images, expand_uploads
from amint.report import AuditReport, method_limits, pair_identity
from amint.splits import MembershipSplit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audit_set(tiny_pair, synthetic, tmp_path_factory):
    """Eight members as files and eight never-seen images in a zip."""
    pair, _ = tiny_pair
    tmp = tmp_path_factory.mktemp("report")
    split = MembershipSplit.from_config(pair.config.split)
    files = []
    for i in split.eval_members[:8].tolist():
        files.append(tmp / f"member_{i}.png")
        Image.fromarray(synthetic.train_images[i][0].numpy()).save(files[-1])
    archive = tmp / "unseen.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in split.eval_nonmembers[:8].tolist():
            path = tmp / f"unseen_{i}.png"
            Image.fromarray(synthetic.test_images[i][0].numpy()).save(path)
            zf.write(path, path.name)
    return [*files, archive]


def test_identity_names_the_hub_commit_and_hashes_the_weights(tiny_pair, tmp_path):
    _, folder = tiny_pair
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--acme--tiny-pair" / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    ident = pair_identity("acme/tiny-pair@v1", snapshot)
    assert (ident.repo_id, ident.commit) == ("acme/tiny-pair", commit)
    assert ident.weights_sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert ("pair", "acme/tiny-pair@v1") in ident.lines()
    assert not any(str(tmp_path) in value for _, value in ident.lines())  # the cache's path stays local
    local = pair_identity("tiny", folder)
    assert local.repo_id is None and ("folder", folder.name) in local.lines()


def test_a_local_pair_is_named_by_its_folder_name_not_its_path(tiny_pair, monkeypatch):
    """A report is shared: the path of the folder on the auditor's machine (user name, layout) stays there."""
    _, folder = tiny_pair
    absolute = pair_identity(str(folder.resolve()), folder.resolve())
    assert absolute.lines()[:2] == [("pair", folder.name), ("folder", folder.name)]
    assert not any("/" in value for _, value in absolute.lines())
    monkeypatch.chdir(folder)  # ``amint audit . ...`` from inside the pair
    assert pair_identity(".", ".").lines()[:2] == [("pair", folder.name), ("folder", folder.name)]


def test_html_report_holds_everything_to_keep(tiny_pair, audit_set, tmp_path):
    pair, folder = tiny_pair
    result = audit_images(pair, expand_uploads(audit_set))
    report = AuditReport.build(pair, result, pair_identity("tiny", folder))
    page = report.write(tmp_path / "audit.html").read_text()
    v = result.dataset
    assert pair_identity("tiny", folder).weights_sha256 in page
    assert f"p-value <b>{v.p_value:.2g}</b>" in page and html.escape(report.answers[0].conclusion) in page
    assert f"{result.dataset.fpr:.2%}" in page  # the false-positive rate behind the verdicts
    # Which rate, measured how, on how many images; and the distinct images the test counted.
    assert html.escape(v.null.words()) in page and "Clopper-Pearson" in page and f"of {v.null.n:,} never-seen" in page
    assert f"<b>{v.n_flagged}</b> of {v.n_images} distinct readable images" in page
    assert all(r.file in page for r in result.rows) and "unseen.zip/unseen_" in page
    assert page.count("data:image/png;base64,") == 1 + len(result.rows)  # self-contained: plot and thumbnails
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened
    report = AuditReport.build(pair, result, pair_identity("tiny", folder))
    assert all(html.escape(limit) in page for limit in method_limits(report.answers))
    # This pair has no memories: no fingerprint answer, and no sentence about what memories recognise.
    assert result.fingerprint is None and "fingerprint" not in page.lower()


def test_pdf_report_opens(tiny_pair, audit_set, tmp_path):
    pair, folder = tiny_pair
    result = audit_images(pair, expand_uploads(audit_set))
    path = AuditReport.build(pair, result, pair_identity("tiny", folder)).write(tmp_path / "audit.pdf")
    assert path.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: the PDF was written but not rendered")
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True)
    page = Image.open(next(tmp_path.glob("page*.png")))
    assert page.size[1] > page.size[0]  # A4 portrait
    assert len(np.unique(np.asarray(page.convert("L")))) > 10  # text and a plot, not a blank page


def test_report_refuses_an_unknown_format(tiny_pair, audit_set, tmp_path):
    pair, folder = tiny_pair
    result = audit_images(pair, expand_uploads(audit_set[:2]))
    with pytest.raises(ValueError, match=r"\.html or \.pdf"):
        AuditReport.build(pair, result, pair_identity("tiny", folder)).write(tmp_path / "audit.docx")


def test_cli_audit_writes_the_report(tiny_pair, audit_set, tmp_path):
    _, folder = tiny_pair
    report = tmp_path / "audit.html"
    run = subprocess.run([sys.executable, "-m", "amint", "audit", str(folder), *map(str, audit_set), "--json",
                          "--report", str(report)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["n_images"] == 16 and len(out["images"]) == 16 and out["n_duplicates"] == 0
    assert out["fpr"] == out["fpr_basis"]["rate"] and out["fpr_basis"]["n"] == 50  # half B of 100 calibration images
    page = report.read_text()
    assert report.is_file() and f"{out['n_flagged']}</b> of 16 distinct" in page
    assert str(folder) not in page and f"<code>{folder.name}</code>" in page  # the folder's name, not its path
    bad = subprocess.run([sys.executable, "-m", "amint", "audit", str(folder), str(audit_set[0]), "--report",
                          str(tmp_path / "audit.txt")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--report must end in .html or .pdf" in bad.stderr

"""An audit report to keep: one self-contained HTML file (images embedded) or a PDF drawn by matplotlib.

The report names the pair exactly (Hub repo id and commit, or the folder's name, and the sha256 of its weights),
the date, the set's verdict with its p-value and reading, every image's verdict with a thumbnail,
the score plot, the false-positive rate behind the verdicts (which rate, measured how, on how many
images), how many identical images counted once, and the method's limits.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .audit import AuditResult
from .pair import WEIGHTS_NAME, AuditedPair, split_revision
from .pvalue import NullRate

REPORT_SUFFIXES = (".html", ".pdf")
ROWS_PER_PDF_PAGE = 22
PDF_MAX_ROWS = 20 * ROWS_PER_PDF_PAGE  # a larger audit's PDF lists these; the HTML and CSV list every image


@dataclass
class PairIdentity:
    name: str  # owner/name[@revision] as the user gave it; a local pair's folder name
    repo_id: str | None  # the Hub repository, when the pair came from the Hub
    commit: str | None  # the Hub commit of the files read (a snapshot folder is named by it)
    folder: str  # the name of the folder the files were read from (never its path: a report is shared)
    weights_sha256: str

    def lines(self) -> list[tuple[str, str]]:
        rows = [("pair", self.name)]
        if self.repo_id:
            rows += [("Hub repository", self.repo_id), ("commit", self.commit or "unknown")]
        else:
            rows.append(("folder", self.folder))
        return rows + [("weights sha256", self.weights_sha256)]


def pair_identity(name: str, folder: str | Path) -> PairIdentity:
    """Who was audited: the Hub commit when ``folder`` is a huggingface_hub snapshot, and the weights' hash."""
    folder = Path(folder)
    digest = hashlib.sha256()
    with (folder / WEIGHTS_NAME).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    # huggingface_hub caches files under .../models--owner--name/snapshots/<commit sha>/
    snapshot = re.search(r"models--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})", folder.resolve().as_posix())
    repo_id, commit = (f"{snapshot[1]}/{snapshot[2]}", snapshot[3]) if snapshot else (None, None)
    # A local path says where the auditor keeps files (a user name, a layout): the report names the folder only.
    folder_name = folder.resolve().name
    if not (repo_id and split_revision(name)[0] == repo_id):
        name = Path(name).name if Path(name).name not in ("", ".", "..") else folder_name
    return PairIdentity(name, repo_id, commit, folder_name, digest.hexdigest())


def method_limits(null: NullRate) -> list[str]:
    """What the verdicts cannot say, in words for the reader of the report."""
    return [
        f"A “member” verdict is a false alarm for some images the model never saw. The set's p-value assumes the "
        f"false-positive rate {null.words()} An upper bound, so the p-value does not overstate the evidence as long "
        "as the images are like those it was measured on.",
        "“Not a member” is not proof that an image was never used: the detector misses some members, more after "
        "heavy edits (large crops, strong JPEG compression, other photos of the same object).",
        "The verdicts concern this pair's audited model only, and images close to its training images (the same "
        "picture, re-saved, resized, slightly moved or cropped); not other models, not other pictures of the same thing.",
        "Identical images (the same model input) count once in the p-value. Near-copies (one picture saved twice in "
        "different ways) and images much alike (one class, one photo shoot) count as separate images, and such a set "
        "may be flagged more often than the varied never-seen images the rate was measured on.",
    ]


@dataclass
class AuditReport:
    result: AuditResult
    identity: PairIdentity
    calibration: dict
    threshold: float
    null: NullRate  # the false-positive rate the set's test assumed, and where it comes from
    created: str

    @classmethod
    def build(cls, pair: AuditedPair, result: AuditResult, identity: PairIdentity) -> "AuditReport":
        cfg = pair.config
        return cls(result, identity, cfg.calibration, cfg.threshold, result.verdict.null,
                   datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def _duplicates(self) -> str:
        d = self.result.verdict.n_duplicates
        return f" ({d} identical {'copy' if d == 1 else 'copies'} counted once)" if d else ""

    @property
    def counts(self) -> str:
        """The set's counts in one line: flagged of distinct images, duplicates, expected at the rate, p-value."""
        v = self.result.verdict
        return (f"{v.n_flagged} of {v.n_images} distinct readable images flagged as members{self._duplicates}; up to "
                f"{v.expected_by_chance:.1f} expected by chance at the false-positive rate of {v.fpr:.2%}; "
                f"p-value {_p(v.p_value)}")

    @property
    def headline(self) -> str:
        return ("Used in training: evidence found" if self.result.verdict.p_value < 0.05
                else "No evidence of use in training")

    def write(self, path: str | Path) -> Path:
        """Write HTML or PDF, chosen by the file's suffix."""
        path = Path(path)
        if path.suffix.lower() == ".html":
            path.write_text(self.html(), encoding="utf-8")
        elif path.suffix.lower() == ".pdf":
            self.pdf(path)
        else:
            raise ValueError(f"A report is written as {' or '.join(REPORT_SUFFIXES)}, not {path.suffix or 'no suffix'!r}")
        return path

    # --- HTML -------------------------------------------------------------------------------------

    def html(self) -> str:
        v = self.result.verdict
        rows = "".join(
            f"<tr><td>{_thumb_tag(r.thumbnail)}</td><td>{html.escape(r.decision)}</td>"
            f"<td>{'' if r.member_probability is None else f'{r.member_probability:.4f}'}</td>"
            f"<td>{html.escape(r.file)}</td><td>{html.escape(r.error or r.predicted_class or '')}</td></tr>"
            for r in self.result.rows)
        ident = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(x)}</code></td></tr>"
                        for k, x in self.identity.lines())
        limits = "".join(f"<li>{html.escape(t)}</li>" for t in method_limits(self.null))
        cls = "member" if v.p_value < 0.05 else "nonmember"
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>aMINT audit report: {html.escape(self.identity.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 900px; margin: 2em auto; padding: 0 1em; color: #1b1b1b; }}
.verdict {{ border: 3px solid; border-radius: 10px; padding: 12px 16px; }}
.verdict.member {{ border-color: #D55E00; background: #fff3ea; }}
.verdict.nonmember {{ border-color: #0072B2; background: #edf6fc; }}
.verdict h2 {{ margin: 0 0 6px; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #ddd; }}
td code {{ word-break: break-all; }} img.thumb {{ height: 40px; image-rendering: pixelated; }}
img.plot {{ max-width: 100%; }} .table-wrap {{ overflow-x: auto; }}
</style></head><body>
<h1>aMINT audit report</h1>
<p>Created {html.escape(self.created)} with aMINT {__version__}.</p>
<div class="verdict {cls}"><h2>{self.headline}</h2>
<p><b>{v.n_flagged}</b> of {v.n_images} distinct readable images flagged as members{html.escape(self._duplicates)};
up to <b>{v.expected_by_chance:.1f}</b> expected by chance at the false-positive rate of {v.fpr:.2%};
p-value <b>{_p(v.p_value)}</b>.</p>
<p>{html.escape(v.reading)}</p>
<p>The false-positive rate: {html.escape(self.null.words())}</p></div>
<h2>The audited pair</h2><table>{ident}</table>
<h2>Scores</h2><img class="plot" alt="Histogram of the set's member probabilities against the calibration members and
never-seen images, with the decision threshold" src="data:image/png;base64,{self._plot_png()}">
<p>Decision threshold {self.threshold:.4f}: images at or above it are called members.</p>
<h2>Per image</h2><div class="table-wrap"><table><tr><th></th><th>decision</th><th>member probability</th><th>file</th>
<th>predicted class / error</th></tr>{rows}</table></div>
<h2>Limits of the method</h2><ul>{limits}</ul>
</body></html>
"""

    def _plot_png(self) -> str:
        buf = io.BytesIO()
        self._plot().savefig(buf, format="png", dpi=110)
        return base64.b64encode(buf.getvalue()).decode()

    def _plot(self):
        from .plots import plot_score_distribution

        return plot_score_distribution(self.calibration, self.result.scores, self.threshold,
                                       title=f"Scores of the {len(self.result.scores)} audited images")

    # --- PDF --------------------------------------------------------------------------------------

    def pdf(self, path: Path) -> None:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(path, metadata={"Title": f"aMINT audit report: {self.identity.name}",
                                      "Creator": f"aMINT {__version__}"}) as pdf:
            pdf.savefig(self._summary_page())
            rows = self.result.rows[:PDF_MAX_ROWS]
            for start in range(0, len(rows), ROWS_PER_PDF_PAGE):
                pdf.savefig(self._rows_page(rows[start:start + ROWS_PER_PDF_PAGE], start, len(self.result.rows)))

    def _summary_page(self):
        from matplotlib.figure import Figure

        v = self.result.verdict
        fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
        text = [("aMINT audit report", 16, "bold"), (f"Created {self.created} with aMINT {__version__}", 9, "normal"),
                ("", 6, "normal"), (self.headline, 14, "bold")]
        for paragraph in (self.counts + ".", v.reading, "The false-positive rate: " + self.null.words()):
            text += [(line, 9, "normal") for line in _wrap(paragraph, 100)]
        text += [("", 6, "normal"), ("The audited pair", 11, "bold")]
        text += [(f"{k}: {x}", 8, "normal") for k, x in self.identity.lines()]
        text += [(f"decision threshold: {self.threshold:.4f}", 8, "normal"), ("", 6, "normal"),
                 ("Limits of the method", 11, "bold")]
        for t in method_limits(self.null):
            text += [(("- " if i == 0 else "  ") + line, 8, "normal") for i, line in enumerate(_wrap(t, 110))]
        y = 0.96
        for line, size, weight in text:
            fig.text(0.07, y, line, fontsize=size, weight=weight, va="top", family="DejaVu Sans")
            y -= 0.0022 * size + 0.008
        plot = self._plot()
        buf = io.BytesIO()
        plot.savefig(buf, format="png", dpi=150)
        buf.seek(0)
        from matplotlib.image import imread

        ax = fig.add_axes((0.07, 0.04, 0.86, max(0.1, y - 0.06)))
        ax.imshow(imread(buf))
        ax.set_axis_off()
        return fig

    def _rows_page(self, rows: list, start: int, total: int):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8.27, 11.69))
        title = f"Per image ({start + 1}-{start + len(rows)} of {total})"
        if total > PDF_MAX_ROWS:
            title += f"; the PDF lists the first {PDF_MAX_ROWS}, the HTML report and the CSV all"
        fig.text(0.07, 0.97, title, fontsize=12 if total <= PDF_MAX_ROWS else 9, weight="bold", va="top")
        header = 0.93
        for k, label in ((0.17, "decision"), (0.33, "member prob."), (0.48, "file"), (0.78, "class / error")):
            fig.text(k, header, label, fontsize=8, weight="bold", va="center")
        step = 0.88 / ROWS_PER_PDF_PAGE
        for i, r in enumerate(rows):
            y = header - (i + 1) * step
            if r.thumbnail is not None:
                ax = fig.add_axes((0.07, y - step * 0.45, 0.08, step * 0.9))
                ax.imshow(r.thumbnail, cmap="gray" if r.thumbnail.ndim == 2 else None, vmin=0, vmax=255,
                          interpolation="nearest")
                ax.set_axis_off()
            prob = "" if r.member_probability is None else f"{r.member_probability:.4f}"
            for k, value in ((0.17, r.decision), (0.33, prob), (0.48, _clip(r.file, 42)),
                             (0.78, _clip(r.error or r.predicted_class or "", 26))):
                fig.text(k, y, value, fontsize=7.5, va="center")
        return fig


def _thumb_tag(thumb: np.ndarray | None) -> str:
    if thumb is None:
        return ""
    from .plots import png_data_uri

    return f'<img class="thumb" alt="" src="{png_data_uri(thumb, 40)}">'


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-300 else "< 1e-300"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def write_audit_report(pair: AuditedPair, result: AuditResult, name: str, folder: str | Path,
                       path: str | Path) -> Path:
    """The report of ``result`` (an audit with ``pair``, read from ``folder``) at ``path`` (.html or .pdf)."""
    return AuditReport.build(pair, result, pair_identity(name, folder)).write(path)

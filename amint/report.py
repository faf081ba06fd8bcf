"""An audit report to keep: one self-contained HTML file (images embedded) or a PDF drawn by matplotlib.

The report names the pair exactly (Hub repo id and commit, or the folder's name, and the sha256 of its weights),
the date, the set-level answer of each reading with its p-value (the aMINT verdict: does the model
carry a trace of this set? the fingerprint: is this set in the pair's training index?), every image's
readings with a thumbnail, each reading's score plot, the false-positive rate behind each answer
(which rate, measured how, on how many images), how many identical images counted once, and the
method's limits.
"""

from __future__ import annotations

import base64
import html
import io
import re
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .audit import AuditResult, reading_claim
from .catalog import weights_sha256
from .pair import AuditedPair, split_revision
from .pvalue import DatasetVerdict, conclusion_words
from .readings import AMINT, FINGERPRINT, Reading

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
    # huggingface_hub caches files under .../models--owner--name/snapshots/<commit sha>/
    snapshot = re.search(r"models--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})", folder.resolve().as_posix())
    repo_id, commit = (f"{snapshot[1]}/{snapshot[2]}", snapshot[3]) if snapshot else (None, None)
    # A local path says where the auditor keeps files (a user name, a layout): the report names the folder only.
    folder_name = folder.resolve().name
    if not (repo_id and split_revision(name)[0] == repo_id):
        name = Path(name).name if Path(name).name not in ("", ".", "..") else folder_name
    return PairIdentity(name, repo_id, commit, folder_name, weights_sha256(folder))


@dataclass
class Answer:
    """One reading's set-level answer: its test, the reading it rests on, and how the report names it."""

    key: str  # amint / fingerprint / combined
    title: str
    verdict: DatasetVerdict
    reading: Reading
    scores: list[float]  # this reading's probabilities of the readable images, in row order

    @property
    def found(self) -> bool:
        return self.verdict.p_value < 0.05

    @property
    def headline(self) -> str:
        if self.key == FINGERPRINT:
            return ("Fingerprint: this set is in the pair's training index" if self.found else
                    "Fingerprint: no evidence that this set is in the pair's training index")
        if self.key == AMINT:
            return ("aMINT verdict: the model carries a trace of this set" if self.found else
                    "aMINT verdict: no evidence of a trace of this set in the model")
        return ("Combined verdict (legacy): evidence that this set is in the pair's training set" if self.found else
                "Combined verdict (legacy): no evidence that this set is in the pair's training set")

    @property
    def question(self) -> str:
        if self.key == FINGERPRINT:
            return ("Is this set, or re-encodings of it, in the training index shipped with the pair? The hashed "
                    "memories look each image up; they read the images, not the model.")
        if self.key == AMINT:
            words = ("Does the audited model carry a trace of this set? The trace head reads the model's activation "
                     "maps for each image.")
            if self.reading.trace_at_chance:
                words += f" On its calibration split this model's trace reads AUC {self.reading.cal_auc:.2f} (0.5 is chance)."
            return words
        return ("One readout over the trace head and the hashed memories, calibrated before amint separated them: "
                "which part decided is not told apart. Recalibrate the pair (python -m amint calibrate) for the two "
                "readings.")

    @property
    def conclusion(self) -> str:
        """What the p-value shows, graded, and for a trace at chance what not finding a set cannot show."""
        return conclusion_words(self.verdict.p_value, reading_claim(self.reading))

    @property
    def counts(self) -> str:
        """The set's counts in one line: flagged of distinct images, duplicates, expected at the rate, p-value."""
        v = self.verdict
        d = v.n_duplicates
        dup = f" ({d} identical {'copy' if d == 1 else 'copies'} counted once)" if d else ""
        flagged = "found in the training index" if self.key == FINGERPRINT else "flagged as members"
        return (f"{v.n_flagged} of {v.n_images} distinct readable images {flagged}{dup}; up to "
                f"{v.expected_by_chance:.1f} expected by chance at the false-positive rate of {v.fpr:.2%}; "
                f"p-value {_p(v.p_value)}")


def set_answers(pair: AuditedPair, result: AuditResult) -> list[Answer]:
    """The set-level answers of an audit, the aMINT verdict's (a legacy pair's combined) first, then the
    fingerprint's: what the report and the app's Audit tab word (the CLI prints each verdict's own sentence,
    amint.pvalue's, which ends in the same conclusion_words)."""
    answers = []
    if result.dataset is not None:
        key = result.reading or AMINT
        title = "aMINT verdict" if key == AMINT else "combined verdict (legacy)"
        answers.append(Answer(key, title, result.dataset, pair.readings[key], result.scores))
    if result.fingerprint is not None:
        answers.append(Answer(FINGERPRINT, "fingerprint", result.fingerprint, pair.readings[FINGERPRINT],
                              result.fingerprint_scores))
    return answers


def method_limits(answers: list[Answer]) -> list[str]:
    """What the answers cannot say, in words for the reader of the report."""
    out = [f"A flagged image is a false alarm for some never-seen images. The {a.title}'s p-value assumes the "
           f"false-positive rate {a.verdict.null.words()}" for a in answers if a.verdict.null is not None]
    out.append("Each rate is an upper bound, so a p-value does not overstate the evidence as long as the images are "
               "like those it was measured on.")
    if any(a.key != FINGERPRINT for a in answers):
        quiet = [a.reading for a in answers if a.reading.trace_at_chance]
        tpr = quiet[0].calibration.get("tpr") if quiet else None
        out.append("“Not a member” is not proof that an image was never used: the aMINT verdict misses some members"
                   + (f" (this model shows no detectable trace: at its threshold it found {tpr:.1%} of the calibration "
                      "members)" if tpr is not None else " (this model shows no detectable trace)" if quiet else "")
                   + ", and it concerns this pair's audited model only, not other models.")
    if any(a.key != AMINT for a in answers):
        out.append("The fingerprint recognises images close to the training images (the same picture, re-saved, "
                   "resized, slightly moved or cropped); not heavy edits (large crops, strong JPEG compression), not "
                   "other pictures of the same thing. It reads the images, not the model: it says what is in the "
                   "training index shipped with the pair, not what the model retained.")
    out.append("Identical images (the same model input) count once in the p-values. Near-copies (one picture saved "
               "twice in different ways) and images much alike (one class, one photo shoot) count as separate images, "
               "and such a set may be flagged more often than the varied never-seen images the rates were measured on.")
    return out


@dataclass
class AuditReport:
    result: AuditResult
    identity: PairIdentity
    answers: list[Answer]  # the aMINT verdict's (a legacy pair's combined), then the fingerprint's
    created: str

    @classmethod
    def build(cls, pair: AuditedPair, result: AuditResult, identity: PairIdentity) -> "AuditReport":
        answers = set_answers(pair, result)
        return cls(result, identity, answers, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def has_fingerprint(self) -> bool:
        return any(a.key == FINGERPRINT for a in self.answers)

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
        fp = self.has_fingerprint

        def prob(p: float | None) -> str:
            return "" if p is None else f"{p:.4f}"

        rows = "".join(
            f"<tr><td>{_thumb_tag(r.thumbnail)}</td><td>{html.escape(r.decision)}</td>"
            f"<td>{prob(r.member_probability)}</td>"
            + (f"<td>{html.escape(r.fingerprint_decision)}</td><td>{prob(r.fingerprint_probability)}</td>" if fp else "")
            + f"<td>{html.escape(r.file)}</td><td>{html.escape(r.error or r.predicted_class or '')}</td></tr>"
            for r in self.result.rows)
        ident = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(x)}</code></td></tr>"
                        for k, x in self.identity.lines())
        limits = "".join(f"<li>{html.escape(t)}</li>" for t in method_limits(self.answers))
        boxes = "".join(
            f'<div class="verdict {"member" if a.found else "nonmember"}"><h2>{html.escape(a.headline)}</h2>'
            f"<p>{html.escape(a.question)}</p>"
            f"<p><b>{a.verdict.n_flagged}</b> of {a.verdict.n_images} distinct readable images "
            f"{'found in the training index' if a.key == FINGERPRINT else 'flagged as members'}"
            f"{html.escape(_duplicates(a.verdict))}; up to <b>{a.verdict.expected_by_chance:.1f}</b> expected by chance "
            f"at the false-positive rate of {a.verdict.fpr:.2%}; p-value <b>{_p(a.verdict.p_value)}</b>.</p>"
            f"<p>{html.escape(a.conclusion)}</p>"
            f"<p>The false-positive rate: {html.escape(a.verdict.null.words())}</p>"
            f"<p>Decision threshold {a.reading.threshold:.4f}: images at or above it are flagged.</p></div>"
            for a in self.answers)
        plots = "".join(
            f'<img class="plot" alt="Histogram of the set&#39;s {html.escape(a.title)} probabilities against the '
            f'calibration members and never-seen images, with the decision threshold" '
            f'src="data:image/png;base64,{self._plot_png(a)}">' for a in self.answers)
        fp_heads = "<th>fingerprint</th><th>fingerprint probability</th>" if fp else ""
        first = self.answers[0].title if self.answers else "verdict"
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>aMINT audit report: {html.escape(self.identity.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 900px; margin: 2em auto; padding: 0 1em; color: #1b1b1b; }}
.verdict {{ border: 3px solid; border-radius: 10px; padding: 12px 16px; margin-bottom: 12px; }}
.verdict.member {{ border-color: #D55E00; background: #fff3ea; }}
.verdict.nonmember {{ border-color: #0072B2; background: #edf6fc; }}
.verdict h2 {{ margin: 0 0 6px; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #ddd; }}
td code {{ word-break: break-all; }} img.thumb {{ height: 40px; image-rendering: pixelated; }}
img.plot {{ max-width: 100%; }} .table-wrap {{ overflow-x: auto; }}
</style></head><body>
<h1>aMINT audit report</h1>
<p>Created {html.escape(self.created)} with aMINT {__version__}.</p>
<h2>The set</h2>
{boxes}
<h2>The audited pair</h2><table>{ident}</table>
<h2>Scores</h2>{plots}
<h2>Per image</h2><div class="table-wrap"><table><tr><th></th><th>{html.escape(first)}</th>
<th>{html.escape(first)} probability</th>{fp_heads}<th>file</th><th>predicted class / error</th></tr>{rows}</table></div>
<h2>Limits of the method</h2><ul>{limits}</ul>
</body></html>
"""

    def _plot_png(self, answer: Answer) -> str:
        buf = io.BytesIO()
        self._plot(answer).savefig(buf, format="png", dpi=110)
        return base64.b64encode(buf.getvalue()).decode()

    def _plot(self, answer: Answer):
        from .plots import plot_score_distribution

        return plot_score_distribution(answer.reading.calibration, answer.scores, answer.reading.threshold,
                                       title=f"{answer.title}: the {len(answer.scores)} audited images")

    # --- PDF --------------------------------------------------------------------------------------

    def pdf(self, path: Path) -> None:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(path, metadata={"Title": f"aMINT audit report: {self.identity.name}",
                                      "Creator": f"aMINT {__version__}"}) as pdf:
            pdf.savefig(self._summary_page())
            if self.answers:
                pdf.savefig(self._plots_page())
            rows = self.result.rows[:PDF_MAX_ROWS]
            for start in range(0, len(rows), ROWS_PER_PDF_PAGE):
                pdf.savefig(self._rows_page(rows[start:start + ROWS_PER_PDF_PAGE], start, len(self.result.rows)))

    def _summary_page(self):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
        text = [("aMINT audit report", 16, "bold"), (f"Created {self.created} with aMINT {__version__}", 9, "normal")]
        for a in self.answers:
            text += [("", 6, "normal"), (a.headline, 12, "bold")]
            for paragraph in (a.question, a.counts + ".", a.conclusion,
                              "The false-positive rate: " + a.verdict.null.words(),
                              f"Decision threshold {a.reading.threshold:.4f}: images at or above it are flagged."):
                text += [(line, 8.5, "normal") for line in _wrap(paragraph, 105)]
        text += [("", 6, "normal"), ("The audited pair", 11, "bold")]
        text += [(f"{k}: {x}", 8, "normal") for k, x in self.identity.lines()]
        text += [("", 6, "normal"), ("Limits of the method", 11, "bold")]
        for t in method_limits(self.answers):
            text += [(("- " if i == 0 else "  ") + line, 8, "normal") for i, line in enumerate(_wrap(t, 115))]
        y = 0.96
        for line, size, weight in text:
            fig.text(0.07, y, line, fontsize=size, weight=weight, va="top", family="DejaVu Sans")
            y -= 0.0022 * size + 0.008
        return fig

    def _plots_page(self):
        from matplotlib.figure import Figure
        from matplotlib.image import imread

        fig = Figure(figsize=(8.27, 11.69))
        fig.text(0.07, 0.97, "Scores", fontsize=12, weight="bold", va="top")
        height = 0.88 / len(self.answers)
        for i, a in enumerate(self.answers):
            buf = io.BytesIO()
            self._plot(a).savefig(buf, format="png", dpi=150)
            buf.seek(0)
            ax = fig.add_axes((0.07, 0.93 - (i + 1) * height, 0.86, height - 0.02))
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
        first = self.answers[0].title if self.answers else "verdict"
        columns = [(0.17, first), (0.36, "probability")]
        if self.has_fingerprint:
            columns += [(0.48, "fingerprint"), (0.64, "probability")]
        columns += [(0.75, "file"), (0.88, "class / error")]
        for k, label in columns:
            fig.text(k, header, label, fontsize=7.5, weight="bold", va="center")
        step = 0.88 / ROWS_PER_PDF_PAGE
        for i, r in enumerate(rows):
            y = header - (i + 1) * step
            if r.thumbnail is not None:
                ax = fig.add_axes((0.07, y - step * 0.45, 0.08, step * 0.9))
                ax.imshow(r.thumbnail, cmap="gray" if r.thumbnail.ndim == 2 else None, vmin=0, vmax=255,
                          interpolation="nearest")
                ax.set_axis_off()
            values = [r.decision, "" if r.member_probability is None else f"{r.member_probability:.4f}"]
            if self.has_fingerprint:
                values += [r.fingerprint_decision.replace("the training index", "index"),
                           "" if r.fingerprint_probability is None else f"{r.fingerprint_probability:.4f}"]
            values += [_clip(r.file, 18), _clip(r.error or r.predicted_class or "", 14)]
            for (k, _), value in zip(columns, values):
                fig.text(k, y, value, fontsize=7, va="center")
        return fig


def _duplicates(v: DatasetVerdict) -> str:
    d = v.n_duplicates
    return f" ({d} identical {'copy' if d == 1 else 'copies'} counted once)" if d else ""


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

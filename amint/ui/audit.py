"""Audit tab: many images (or a zip) in, one verdict per image and one for the whole set.

The handler imports the library (and torch) when it runs; the layout needs none of it.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from .common import MODEL_CONCURRENCY_ID, Selector, get_pair, limits_note, scratch_dir, user_errors

MAX_THUMBNAILS = 300  # rows beyond this get no thumbnail (keeps the page light)
THUMB_SIDE = 40


def _paths(files: Any) -> list[str]:
    if not files:
        raise gr.Error("Upload some images or a zip of images first.", title="Nothing to audit")
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else str(f)) for f in files]


def _thumbnail_html(thumb: Any) -> str:
    from amint import plots

    if thumb is None:
        return ""
    return (f'<img src="{plots.png_data_uri(thumb, THUMB_SIDE)}" alt="" '
            f'style="height:{THUMB_SIDE}px;image-rendering:pixelated">')


def _table(result) -> list[list[Any]]:
    """The library's audit table (file, probability, decision, class, error) with a thumbnail first; the last
    column holds the predicted class, or for a file that could not be read, why."""
    rows = []
    for i, (r, (file, probability, decision, predicted, error)) in enumerate(zip(result.rows, result.table())):
        thumb = _thumbnail_html(r.thumbnail) if i < MAX_THUMBNAILS and not r.error else ""
        words = "could not be read" if r.error else decision.capitalize()
        rows.append([thumb, words, probability, r.fingerprint_decision.capitalize(), file, error or predicted])
    return rows


def _expected(x: float) -> str:
    """How many flags chance explains: 0.035 stays 0.035, not 0.0."""
    return f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def _p(v) -> str:
    return f"{v.p_value:.2g}" if v.p_value >= 1e-300 else "< 1e-300"


def _headline(a) -> str:
    """The report's headline without the reading's name (the card's kicker names it)."""
    words = a.headline.split(": ", 1)[-1]
    return words[:1].upper() + words[1:]


def _answer_html(a, alone: bool, err: str) -> str:
    """One set-level answer in the report's words (amint.report.Answer): the aMINT verdict as a card, the
    fingerprint as the line beside it."""
    from amint.readings import FINGERPRINT

    v = a.verdict
    counts = (f'<div class="verdict-prob"><b>{v.n_flagged}</b> of {v.n_images} distinct images '
              f"{'in the training index' if a.key == FINGERPRINT else 'flagged as members'}"
              f"{f' ({v.n_duplicates} identical copies counted once)' if v.n_duplicates else ''} · up to "
              f"<b>{_expected(v.expected_by_chance)}</b> expected by chance (false-positive rate {v.fpr:.2%}) · "
              f"p-value <b>{_p(v)}</b></div>")
    words = "".join(f'<div class="verdict-words">{html.escape(t)}</div>'
                    for t in (a.conclusion + err, a.question, f"The false-positive rate: {v.null.words()}"))
    if a.key == FINGERPRINT:
        kicker = ("Fingerprint only: this pair has no trace head" if alone
                  else "Fingerprint for the set · reads the images, not the model")
        return (f'<div class="fingerprint-line {"found" if a.found else "notfound"}{" alone" if alone else ""}" '
                f'data-reading="fingerprint"><div class="verdict-kicker">{kicker}</div>'
                f'<div class="fp-answer"><b>{html.escape(_headline(a))}</b></div>{counts}{words}</div>')
    kicker = ("Combined reading (legacy pair)" if a.key != "amint"
              else "aMINT verdict for the set · the trace head reads the model")
    quiet = a.reading.trace_at_chance
    style = "member" if a.found else "quiet" if quiet else "nonmember"
    return (f'<div class="verdict {style}" data-reading="{html.escape(a.key)}"><div class="verdict-kicker">{kicker}'
            f'</div><div class="verdict-word">{html.escape(_headline(a))}</div>{counts}{words}</div>')


def _summary_html(answers: list, n_errors: int) -> str:
    """The set's answers (amint.report.set_answers), the aMINT verdict's card first, then the fingerprint's line."""
    err = f" {n_errors} file(s) could not be read and were left out." if n_errors else ""
    alone = len(answers) == 1
    return "".join(_answer_html(a, alone, err if i == 0 else "") for i, a in enumerate(answers))


def audit(pair_name: str, files: Any, progress=gr.Progress()) -> tuple:
    """API ``audit``: (pair, files) -> summary, score plot, per-image table, CSV file, dataset verdict,
    and the audit report to keep as HTML and as PDF."""
    from amint import plots
    from amint.audit import audit_images, expand_uploads
    from amint.report import AuditReport, pair_identity

    loaded = get_pair(pair_name, progress)
    paths = _paths(files)
    progress(0, desc="Reading the uploads")
    with user_errors("The audit could not run"):
        items = expand_uploads(paths)
        if not items:
            raise gr.Error("No images found in the upload (zips are searched for image files).", title="No images")
    with user_errors("The audit could not run"):
        result = audit_images(loaded.pair, items,
                              progress=lambda done, total: progress((done, total), desc="Checking images",
                                                                    unit="images"))
    n_errors = sum(1 for r in result.rows if r.error)
    if n_errors == len(result.rows):
        raise gr.Error("None of the uploaded files could be read as an image.", title="No readable images")
    out = Path(tempfile.mkdtemp(prefix="audit-", dir=scratch_dir("audit")))
    csv_path = result.to_csv(out / "audit.csv")
    progress(1, desc="Writing the reports")
    with user_errors("The report could not be written"):
        report = AuditReport.build(loaded.pair, result, pair_identity(loaded.name, loaded.folder))
        html_path, pdf_path = report.write(out / "audit-report.html"), report.write(out / "audit-report.pdf")
    shown = loaded.pair.readings.get(result.reading or "fingerprint")
    scores = result.scores if result.dataset is not None else result.fingerprint_scores
    plot = plots.plot_score_distribution(shown.calibration, scores, shown.threshold,
                                         title=f"Scores of the {len(scores)} uploaded images"
                                               + (" (aMINT verdict)" if result.reading == "amint" else ""))
    v = result.dataset
    verdict = {"pair": loaded.name, **(v.to_dict() if v else {}), "n_unreadable": n_errors}
    if result.fingerprint is not None:
        verdict["fingerprint"] = result.fingerprint.to_dict()
    summary = _summary_html(report.answers, n_errors)
    return summary, plot, _table(result), str(csv_path), verdict, str(html_path), str(pdf_path)


def build(sel: Selector) -> None:
    gr.Markdown("Upload a set of images (or a zip of them) to ask: **was this set used to train the selected "
                "model?** Each image gets both readings (the aMINT verdict, from the model; the fingerprint, from "
                "the image and the pair's training index), and for each a statistical test says whether more "
                "images are flagged than its false-positive rate explains.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            files = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Images or zip files",
                            height=200, elem_id="audit-files")
            button = gr.Button("Audit these images", variant="primary", elem_id="audit-button")
            limits_note()
        with gr.Column(scale=2, min_width=300):
            summary = gr.HTML('<div class="verdict empty">The answer for the whole set appears here.</div>',
                              elem_id="audit-summary")
            plot = gr.Plot(label="The set's scores against members and non-members", show_label=False,
                           elem_id="audit-plot")
    table = gr.Dataframe(
        headers=["", "aMINT verdict", "member prob.", "fingerprint", "file", "predicted class or error"],
        datatype=["html", "str", "number", "str", "str", "str"],
        label="Per image", interactive=False, wrap=True, max_height=420,
        column_widths=["56px", "130px", "110px", "170px", "220px", "160px"], elem_id="audit-table",
    )
    with gr.Row():
        report_html = gr.DownloadButton("Download the report (HTML)", size="md", variant="primary",
                                        elem_id="audit-report-html")
        report_pdf = gr.DownloadButton("Download the report (PDF)", size="md", elem_id="audit-report-pdf")
        csv = gr.DownloadButton("Download the table (CSV)", size="md", elem_id="audit-csv")
    with gr.Accordion("Dataset verdict (JSON)", open=False):
        verdict = gr.JSON(elem_id="audit-json")
    button.click(audit, [sel.dropdown, files], [summary, plot, table, csv, verdict, report_html, report_pdf],
                 api_name="audit", concurrency_id=MODEL_CONCURRENCY_ID)

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
    """The library's audit table (file, probability, decision, class, error) with a thumbnail first."""
    rows = []
    for i, (r, (file, probability, decision, predicted, error)) in enumerate(zip(result.rows, result.table())):
        thumb = _thumbnail_html(r.thumbnail) if i < MAX_THUMBNAILS and not r.error else ""
        words = "could not be read" if r.error else decision.capitalize()
        rows.append([thumb, words, probability, file, error or predicted])
    return rows


def _summary_html(answers, n_errors: int) -> str:
    """One box per reading's set-level answer (amint.report.Answer: the aMINT verdict first, then the fingerprint):
    its headline, counts and p-value, what it asks and the false-positive rate it was tested against."""
    err = f" {n_errors} file(s) could not be read and were left out." if n_errors else ""
    boxes = []
    for a in answers:
        v = a.verdict
        cls = "member" if a.found else "nonmember"
        boxes.append(
            f'<div class="verdict {cls}"><div class="verdict-word">{html.escape(a.headline)}</div>'
            f'<div class="verdict-prob">{html.escape(a.counts)}</div>'
            f'<div class="verdict-words">{html.escape(a.question)}</div>'
            f'<div class="verdict-words">{html.escape(v.reading)}{err}</div>'
            f'<div class="verdict-words">The false-positive rate: {html.escape(v.null.words())}</div></div>')
    return "".join(boxes) or '<div class="verdict empty">This pair has no calibrated reading to test a set with.</div>'


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
    first = report.answers[0].title if report.answers else "scores"
    plot = plots.plot_score_distribution(loaded.pair.config.calibration, result.scores,
                                           loaded.pair.config.threshold,
                                           title=f"{first[:1].upper() + first[1:]}: the {len(result.scores)} uploaded images")
    v = result.verdict
    verdict = {"pair": loaded.name, **v.to_dict(), "n_unreadable": n_errors}
    if result.fingerprint is not None:
        verdict["fingerprint"] = result.fingerprint.to_dict()
    return (_summary_html(report.answers, n_errors), plot, _table(result), str(csv_path), verdict, str(html_path),
            str(pdf_path))


def build(sel: Selector) -> None:
    gr.Markdown("Upload a set of images (or a zip of them) to ask: **was this set used to train the selected "
                "model?** Each image gets both readings (the aMINT verdict: does the model carry a trace of it? the "
                "fingerprint: is it in the pair's training index?), and for each reading a statistical test says "
                "whether more images are flagged than its false-positive rate explains.")
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
        headers=["", "decision", "member prob.", "file", "predicted class"],
        datatype=["html", "str", "number", "str", "str"],
        label="Per image", interactive=False, wrap=True, max_height=420,
        column_widths=["56px", "130px", "120px", "240px", "180px"], elem_id="audit-table",
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

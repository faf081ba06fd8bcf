"""The Gradio web demonstrator: one module per tab, a shared pair selector. The only layer that imports gradio.

``build_app()`` only lays out the page, from what imports without torch; ``launch()`` serves it, then
loads torch and the default pair in the background (wake.py). Handlers import the library when they run.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

TITLE = "aMINT: was this image used to train the model?"

CSS = """
.gradio-container { max-width: 1280px !important; width: 100%; margin: 0 auto; }
/* Flex items default to their content's width; without this one wide table widens the whole page. */
.gradio-container, .gradio-container > .main, .gradio-container > .main > .wrap, .gradio-container main.contain {
  min-width: 0 !important; }
#app-header h1 { margin-bottom: 0.2em; }
#app-header p { margin-top: 0; color: var(--body-text-color-subdued); }
#pair-row { align-items: flex-end; }
#pair-load { margin-bottom: var(--block-padding); }
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
/* Galleries: as many columns as fit, so a phone gets 3-4 and a desktop 8-10. */
#verify-examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(112px, 1fr)) !important; }
/* Each example's caption holds its known answer and both readings' answers: wrapped, across the thumbnail. */
#verify-examples .caption-label { white-space: normal; max-width: none; left: 0; right: 0; bottom: 0;
  border-radius: 0; font-size: 11px; line-height: 1.25; padding: 2px 4px; opacity: 0.93; }
#verify-examples .fixed-height { min-height: 0 !important; max-height: none !important; }
/* Wide tables scroll inside their box instead of widening the page on a phone. */
#audit-table, #train-metrics, #model-metrics, #model-settings, #model-card { min-width: 0; max-width: 100%; }
#audit-table .table-wrap, #train-metrics .table-wrap, #model-metrics .table-wrap, #model-settings .table-wrap {
  overflow-x: auto; max-width: 100%; }
#model-card table { display: block; overflow-x: auto; max-width: 100%; }
#model-card th, #model-card td { white-space: nowrap; }
#model-card code { word-break: break-all; }
#verify-image img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
.verdict { border-radius: 10px; padding: 14px 18px; border: 2px solid var(--border-color-primary);
           background: var(--block-background-fill); line-height: 1.45; }
.verdict.empty { color: var(--body-text-color-subdued); border-style: dashed; }
/* Okabe-Ito vermillion (member) and blue (not a member): distinct for every common colour-vision
   deficiency; the word, not the colour, carries the verdict. */
.verdict.member { border-color: #D55E00; background: #fff3ea; }
.verdict.nonmember { border-color: #0072B2; background: #edf6fc; }
.dark .verdict.member { background: #3a1a05; }
.dark .verdict.nonmember { background: #06243a; }
.verdict-word { font-size: 1.9em; font-weight: 700; }
.verdict.member .verdict-word { color: #a84300; }
.verdict.nonmember .verdict-word { color: #005a8c; }
.dark .verdict.member .verdict-word { color: #ffb27a; }
.dark .verdict.nonmember .verdict-word { color: #8cc8f0; }
.verdict.quiet { border-color: var(--border-color-primary); border-style: dashed;
                 background: var(--background-fill-secondary); }
.verdict.quiet .verdict-word { color: var(--body-text-color-subdued); }
.verdict-kicker { font-size: 0.85em; font-weight: 600; color: var(--body-text-color-subdued); }
.verdict-prob { font-size: 1.05em; margin-top: 2px; }
.verdict.quiet .verdict-prob { font-size: 0.95em; margin-top: 6px; }
/* The fingerprint: its own line under the aMINT card; Okabe-Ito bluish green when the image is in the index. */
.fingerprint-line { margin-top: 10px; padding: 10px 14px; border-radius: 8px; border-left: 6px solid #999;
                    background: var(--background-fill-secondary); line-height: 1.45; }
.fingerprint-line.found { border-left-color: #009E73; }
.fingerprint-line.alone { border: 2px solid #999; border-left-width: 6px; }
.fingerprint-line.alone.found { border-color: #009E73; }
.fp-answer { font-size: 1.1em; margin-top: 2px; }
.fingerprint-line .verdict-prob { font-size: 0.95em; }
.fp-detail { font-size: 0.9em; color: var(--body-text-color-subdued); margin-top: 4px; }
.readings-disagree { margin-top: 10px; padding: 8px 12px; border-radius: 8px; border-left: 6px solid #E69F00;
                     background: var(--background-fill-secondary); }
.score-charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 10px; }
.score-chart figcaption { font-weight: 600; font-size: 0.9em; }
.verdict-words { margin-top: 6px; }
.verdict-truth { margin-top: 8px; font-weight: 600; }
.score-chart { color: var(--body-text-color); margin: 6px 0; }
.compare .verdict, .compare .fingerprint-line { font-size: 0.95em; }
.compare .verdict-word { font-size: 1.5em; }
.why p { margin: 4px 0 8px; }
.why p.why-reading { margin-top: 14px; }
.why p.why-no-evidence { padding: 6px 10px; border-left: 4px solid var(--body-text-color-subdued);
                         background: var(--background-fill-secondary); border-radius: 4px; }
.why p.why-total { font-weight: 600; }
.why-row { display: grid; grid-template-columns: minmax(120px, 30%) 1fr; gap: 10px; align-items: center;
           margin: 4px 0; }
.model-view { margin: 0; text-align: center; font-size: 0.85em; color: var(--body-text-color-subdued); }
.model-view img { width: 100%; max-width: 240px; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated;
                  border-radius: 4px; }
.why-figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 10px;
               margin-top: 6px; }
.why-figure { margin: 0; text-align: center; font-size: 0.85em; }
.why-figure img { width: 100%; max-width: 200px; aspect-ratio: 1; image-rendering: pixelated; border-radius: 4px; }
.why-bar { position: relative; height: 14px; border-radius: 3px; background: var(--background-fill-secondary); }
.why-bar::after { content: ""; position: absolute; top: 0; bottom: 0; width: var(--w); border-radius: 3px; }
.why-bar.pos::after { left: 50%; background: #D55E00; }
.why-bar.neg::after { right: 50%; background: #0072B2; }
.why-bar::before { content: ""; position: absolute; left: 50%; top: -2px; bottom: -2px; width: 1px;
                   background: var(--body-text-color-subdued); }
.edit-result { padding: 8px 12px; border-radius: 8px; border-left: 6px solid #0072B2;
               background: var(--background-fill-secondary); }
.edit-result.changes { border-left-color: #D55E00; }
.compare { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px; }
.compare-name { font-weight: 600; margin-bottom: 4px; word-break: break-all; }
.compare-words { margin-top: 10px; padding: 10px 14px; border-radius: 8px; border-left: 6px solid #E69F00;
                 background: var(--background-fill-secondary); }
:focus-visible { outline: 3px solid #E69F00 !important; outline-offset: 2px; }
.notice { padding: 8px 12px; border-radius: 8px; background: var(--background-fill-secondary); }
.prose-narrow { max-width: 760px; }
.limits-note { font-size: 0.8em; color: var(--body-text-color-subdued); }
@media (max-width: 640px) {
  .verdict-word { font-size: 1.5em; }
  #app-header h1 { font-size: 1.45em; }
  .gradio-container { padding: 0 6px !important; }
  .why-row { grid-template-columns: 1fr; gap: 2px; }
  #verify-examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(92px, 1fr)) !important; }
  #verify-examples .caption-label { font-size: 10px; }
}
"""


def theme() -> gr.themes.Base:
    # The default theme's fonts are bundled with Gradio: nothing is fetched from the internet.
    return gr.themes.Default(primary_hue="indigo", neutral_hue="slate", radius_size="md")


class AmintBlocks(gr.Blocks):
    """gr.Blocks with the app's queue settings, and whose launch() applies the app's theme and CSS
    (Gradio 6 takes them in launch) and starts the wake."""

    def queue(self, *args, **kwargs):
        """The app's queue: handlers that run the model share common.MODEL_CONCURRENCY slots (their
        listeners name MODEL_CONCURRENCY_ID), the rest (page load, pair selector, stop) are light; at
        most common.QUEUE_MAX_SIZE wait. A queued client is sent its place in line, which the page shows.

        As defaults, because gr.Blocks.__init__ calls queue() itself: each call rebuilds the server
        app (about 0.2-0.5 s on 2 cores), so the app sets its queue in that one call, not a second.
        """
        from .common import MODEL_CONCURRENCY, QUEUE_MAX_SIZE

        kwargs.setdefault("default_concurrency_limit", MODEL_CONCURRENCY)
        kwargs.setdefault("max_size", QUEUE_MAX_SIZE)
        return super().queue(*args, **kwargs)

    def launch(self, *args, **kwargs):
        from amint.uploads import MAX_UPLOAD_BYTES

        from . import wake
        from .common import MAX_THREADS, configure_serving

        kwargs.setdefault("theme", theme())
        kwargs.setdefault("css", CSS)
        # Gradio refuses a larger upload (HTTP 413) before it is written to disk or reaches a handler.
        kwargs.setdefault("max_file_size", MAX_UPLOAD_BYTES)
        kwargs.setdefault("max_threads", MAX_THREADS)
        configure_serving()
        wake.start(self)  # waits until the page is served, then loads torch and the default pair
        return super().launch(*args, **kwargs)


def build_app() -> gr.Blocks:
    """The whole app: header, pair selector, and the Verify / Audit / Train / Model / About tabs."""
    from . import about, audit, common, models, train, verify

    with AmintBlocks(title="aMINT: Active Membership Inference Test", delete_cache=common.DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {TITLE}\n"
            "Two answers per image. The **aMINT verdict**: a *membership detector* (the trace head) reads the image "
            "classifier's internal activity for a trace of the image (Active Membership Inference Test: classifier "
            "and detector trained together); how well it can depends on the pair. The **fingerprint**: whether the "
            "image itself is in the training index shipped with the pair; it reads the image, not the model.",
            elem_id="app-header",
        )
        sel = common.pair_selector()
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Verify", id="verify", elem_id="tab-verify"):
                verify.build(sel)
            with gr.Tab("Audit", id="audit", elem_id="tab-audit"):
                audit.build(sel)
            with gr.Tab("Train", id="train", elem_id="tab-train"):
                train.build(sel)
            with gr.Tab("Model", id="model", elem_id="tab-model") as model_tab:
                model_outputs = models.build(sel)
            with gr.Tab("About", id="about", elem_id="tab-about"):
                about.build()
        common.wire_selector(demo, sel)
        models.wire_refresh(model_tab.select, sel, model_outputs)
    return demo  # queued as AmintBlocks.queue says

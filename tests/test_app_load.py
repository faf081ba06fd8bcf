"""The load benchmark in its short form (10 clients x 5 requests): all answered alike, queue places shown,
memory flat. The full form (1,000 sequential, then 50 x 10) is benchmarks/app_load.py; figures in
benchmarks/README.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from .test_app import app_env  # noqa: E402,F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _app_load():
    spec = importlib.util.spec_from_file_location("app_load", ROOT / "benchmarks" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ten_clients_five_requests_each(app_env):
    root, _ = app_env
    report = _app_load().main(["--pair", "tiny", "--models-dir", str(root / "models"), "--examples",
                               str(root / "examples"), "--sequential", "20", "--clients", "10", "--requests", "5", "--settle", "12"])
    concurrent = report["concurrent"]
    assert concurrent["answered"] == 50 and concurrent["failed"] == 0, concurrent["first_errors"]
    assert concurrent["verdicts_match_one_client"]
    # More clients than slots: some waited, and were told their place in the queue.
    assert concurrent["requests_shown_a_queue_place"] > 0 and concurrent["largest_queue_place_shown"] >= 1
    rss = report["rss_mb"]
    assert rss["after_concurrent"] - rss["after_first_50"] <= 100, rss
    assert report["gradio_temp_dir_at_end"]["mb"] < 50

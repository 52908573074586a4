"""``report.html`` in a real browser: headless Chromium shows the headline, the delta chart and
every flip's annotated screenshot, with no console errors and nothing fetched from outside.

The report is made without vLLM: two runs through ``execute_run`` with the shipped scripted
backend (A = post, B = pre, answering so that samples flip both ways, one in a wrong format),
then ``compare_runs``, exactly as ``screenspot-eval compare`` writes it. The browser is an
installed Chromium (``.ci/run`` installs Debian's); without one the test is skipped, except in
CI (``CI`` set), where a missing browser fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_report
from PIL import Image
from report_browser import find_chromium, inspect_report

from screenspot_eval.backends.base import GroundingRequest
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.report.comparison import DELTAS_PNG, FLIPS_CSV, REPORT_HTML
from screenspot_eval.run.compare import compare_runs
from screenspot_eval.run.config import resolve_config
from screenspot_eval.run.session import execute_run

pytestmark = pytest.mark.browser

N = 18
WRONG_FORMAT_ID_INDEX = 4  # A right, B answers in prose: a flip with no B click to draw


def _require_browser() -> str:
    chromium = find_chromium()
    missing = []
    if chromium is None:
        missing.append("no Chromium (chromium on PATH or /usr/bin/chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("no playwright (the dev extra)")
    if missing:
        reason = "; ".join(missing) + ": apt-get install -y chromium; pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but: {reason}")
        pytest.skip(reason)
    assert chromium is not None
    return chromium


def box_answer(sample: Sample, *, correct: bool) -> str:
    """A ``yx-1000`` point box on the target's centre, or near the far corner of the screen."""
    x1, y1, x2, y2 = sample.bbox
    cx, cy = ((x1 + x2) / 2, (y1 + y2) / 2) if correct else (sample.width - 2, 2)
    y, x = round(cy / sample.height * 1000), round(cx / sample.width * 1000)
    return json.dumps([{"box_2d": [y, x, y, x], "label": "target"}])


def scripted(samples: dict[str, Sample], right: set[str], prose: set[str]) -> Any:
    def answer(request: GroundingRequest) -> str:
        if request.sample_id in prose:
            return "I cannot find that element on the screen."
        return box_answer(samples[request.sample_id], correct=request.sample_id in right)

    return answer


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("browser")
    data = base / "data"
    synthesize_release(data, N, seed=5, max_width=480, target_scale=3.0)
    samples = {s.id: s for s in load_release(data).samples}
    ids = sorted(samples)
    right_a = {i for n, i in enumerate(ids) if n % 2 == 0}
    right_b = {i for n, i in enumerate(ids) if n % 3 != 2}
    prose_b = {ids[WRONG_FORMAT_ID_INDEX]}
    right_b -= prose_b
    runs = {}
    for side, norm, right, prose in (("a", "post", right_a, set()), ("b", "pre", right_b, prose_b)):
        config = resolve_config(
            None,
            {
                "engine.model": "scripted/model",
                "engine.max_soft_tokens": 70,
                "engine.norm": norm,
                "data.source": str(data),
                "runtime.image_workers": 1,
                "runtime.prefetch": 2,
            },
        )
        backend = ScriptedBackend(scripted(samples, right, prose), report=fake_report(norm))
        out = base / f"{side}-{norm}"
        execute_run(config, out, quiet=True, backend_factory=lambda _config, b=backend: b)
        runs[side] = out
    result = compare_runs(runs["a"], runs["b"], base / "cmp", n_resamples=200)
    expected_flips = {i for i in ids if (i in right_a) != (i in right_b)}
    assert expected_flips, "the scripted answers must make some samples flip"
    return {"result": result, "out": base / "cmp", "expected_flips": expected_flips}


@pytest.fixture(scope="module")
def shown(report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chromium = _require_browser()
    png = tmp_path_factory.mktemp("shot") / "report.png"
    started = time.monotonic()
    check = inspect_report(report["out"] / REPORT_HTML, chromium=chromium, png=png)
    print(f"Chromium {check.browser_version}: {time.monotonic() - started:.1f} s, {png}")
    return {"check": check, "png": png}


def test_the_report_shows_the_headline(report: dict[str, Any], shown: dict[str, Any]) -> None:
    check = shown["check"]
    headline = report["result"].headline
    assert " vs " in headline and "McNemar" in headline, headline
    assert check.headline is not None
    assert " ".join(check.headline.split()) == " ".join(headline.split())
    assert check.title == headline


def test_the_chart_is_the_embedded_deltas_png(
    report: dict[str, Any], shown: dict[str, Any]
) -> None:
    (chart,) = shown["check"].chart
    prefix = "data:image/png;base64,"
    assert chart["src"].startswith(prefix)
    assert (
        base64.b64decode(chart["src"][len(prefix) :]) == (report["out"] / DELTAS_PNG).read_bytes()
    )
    with Image.open(report["out"] / DELTAS_PNG) as png:
        assert (chart["naturalWidth"], chart["naturalHeight"]) == png.size
    assert chart["shownWidth"] > 100 and chart["shownHeight"] > 50


def test_every_flip_is_shown_with_its_decoded_screenshot(
    report: dict[str, Any], shown: dict[str, Any]
) -> None:
    check = shown["check"]
    flips_csv = pd.read_csv(report["out"] / FLIPS_CSV, dtype={"id": str})
    n_flips = len(report["expected_flips"])
    assert set(flips_csv["id"]) == report["expected_flips"]
    assert set(flips_csv["direction"]) == {"a_only", "b_only"}
    match = re.fullmatch(r"Flipped samples \((\d+)\)", check.flips_heading or "")
    assert match and int(match.group(1)) == n_flips, check.flips_heading
    assert check.flip_figures == n_flips
    assert check.placeholders == 0
    assert len(check.flip_images) == n_flips
    for img in check.flip_images:
        assert re.match(r"data:image/(png|jpeg);base64,", img["src"]), img["alt"]
        assert img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img["alt"]
        assert img["shownWidth"] > 0 and img["shownHeight"] > 0, img["alt"]
    assert len(check.images) == n_flips + 1  # the flips and the chart, nothing else


def test_no_console_errors_scripts_or_outside_requests(shown: dict[str, Any]) -> None:
    check = shown["check"]
    assert check.problems() == []
    assert check.console_errors == []
    assert check.page_errors == []
    assert check.outside_requests == []
    assert check.scripts == 0


def test_the_screenshot_is_a_full_page(shown: dict[str, Any]) -> None:
    with Image.open(shown["png"]) as png:
        assert png.format == "PNG"
        width, height = png.size
        assert width == 1200 and height > 1600  # full page: taller than the viewport
        assert len(png.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50  # not blank


def test_the_check_catches_a_broken_page(
    report: dict[str, Any], tmp_path: Path, shown: dict[str, Any]
) -> None:
    """The same driver on a spoiled copy: a corrupt flip image, a console error, an outside
    image (loopback, refused). Each must be reported, so a green check means something."""
    page = (report["out"] / REPORT_HTML).read_text(encoding="utf-8")
    first = page.index('<figure class="flip"')
    start = page.index(";base64,", first) + len(";base64,")
    page = page[:start] + "AAAAspoiled" + page[start + 40 :]
    planted = (
        '<script>console.error("planted")</script>'
        '<img alt="outside" src="http://127.0.0.1:9/x.png">'
    )
    spoiled = tmp_path / REPORT_HTML
    spoiled.write_text(page.replace("</body>", planted + "</body>"), encoding="utf-8")
    check = inspect_report(spoiled, chromium=find_chromium())
    problems = "\n".join(check.problems())
    assert "image not decoded: 'screenshot " in problems, problems
    assert "image not decoded: 'outside'" in problems, problems
    assert "console error: planted" in problems, problems
    assert "request outside the file: http://127.0.0.1:9/x.png" in problems, problems

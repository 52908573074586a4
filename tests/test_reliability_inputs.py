"""Hostile inputs end to end: dataset text, broken or escaping image files, and input drift.

Every case goes through the public entry points (``open_dataset``, ``iter_images``,
``execute_run`` with a fake backend, ``compare_runs`` / ``write_comparison`` and
``screenspot-eval data check``) and asserts what the user sees: the message names the annotation
file, the sample id and the field; strict mode refuses, lenient mode excludes and lists; an
image that slips past validation becomes a ``failed`` record. No sample is ever dropped
silently: records plus manifest exclusions account for every sample of the dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_report
from PIL import Image
from typer.testing import CliRunner

from screenspot_eval.backends.base import GroundingRequest
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.backends.variant import (
    EmbedderReport,
)
from screenspot_eval.cli.app import app
from screenspot_eval.data.errors import ImageLoadError, InvalidSampleError, UnsafePathError
from screenspot_eval.data.images import iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.validate import open_dataset
from screenspot_eval.errors import EXIT_DATA_ERROR
from screenspot_eval.report.comparison import COMPARISON_MD, FLIPS_CSV, REPORT_HTML
from screenspot_eval.run.compare import compare_runs
from screenspot_eval.run.config import RunConfig, resolve_config
from screenspot_eval.run.session import RunRefusedError, execute_run
from screenspot_eval.store.run_dir import RunDir

SMALL = (64, 40)
BIG = (200, 150)  # 30000 pixels: the decompression-bomb victim once the limit is lowered
BOX = [10, 10, 30, 30]
FILE = "annotations/app_linux.json"
OTHER_FILE = "annotations/tool_windows.json"
VICTIM = "victim_0"

#: Instruction texts that must travel verbatim from the annotation file to every output.
HOSTILE: dict[str, str] = {
    "html_script": "<script>alert(1)</script> Click Save",
    "html_img_onerror": '"><img src=x onerror=alert(2)> Open',
    "nul": "Click\x00 the button",
    "ansi_and_osc": "\x1b[31mRed\x1b[0m \x1b]0;pwned\x07 button \x1b[2J",
    "carriage_return": "Click Save\rOverwritten\r\nline two",
    "rtl_and_zero_width": "Click \u202eevas\u202c \u200b\u200f\ufeff\u2066x\u2069",
    "unicode_line_breaks": "one\u2028two\u2029three\x85four\x1c\x1dfive\x0b\x0c",
    "markdown_pipes_newlines": "a | b\n| c |\n\n# heading",
    "placeholder_and_format": "Click {instruction} {0} %s {{x}} $x$",
    "long_100k": "<i>" + "x" * 100_000 + "</i>",
}
HOSTILE_ID = '<b>id</b>"|\\`'
HOSTILE_APP = '<b onmouseover="x">app</b>|pipe'
PIPE_GROUP = "Dev|Ops"
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


# --- building datasets ---------------------------------------------------------------------


def write_png(path: Path, size: tuple[int, int] = SMALL) -> Path:
    """A deterministic, not-too-compressible PNG (so a cut file loses real pixel data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = bytes(
        (x * 7 + y * 13 + c * 71) % 256 for y in range(h) for x in range(w) for c in range(3)
    )
    Image.frombytes("RGB", size, pixels).save(path, format="PNG", compress_level=1)
    return path


def record(sample_id: str, img: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": sample_id,
        "img_filename": img,
        "instruction": f"Click target {sample_id}",
        "bbox": BOX,
        "img_size": list(SMALL),
        "application": "app",
        "platform": "linux",
        "group": "Dev",
        "ui_type": "text",
    }
    return base | fields


def write_release(root: Path, files: dict[str, list[dict[str, Any]]]) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for rel, records in files.items():
        (root / rel).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def read_file(root: Path, rel: str) -> list[dict[str, Any]]:
    return json.loads((root / rel).read_text(encoding="utf-8"))


# --- a fake backend (no vLLM) --------------------------------------------------------------


def embedder_report(variant: str) -> EmbedderReport:
    return fake_report(variant, vllm_version="0.0.test")


class FakeBackend(ScriptedBackend):
    """Answers in the default template's ``box_2d`` format: right for ``right`` ids, else wrong."""

    def __init__(self, samples: Iterable[Sample], *, variant: str = "pre", right: bool = True):
        self.samples = {s.id: s for s in samples}
        self.right = right
        super().__init__(self._answer, report=embedder_report(variant), check=self._same_size)

    def _same_size(self, request: GroundingRequest) -> None:
        assert request.image.size == self.samples[request.sample_id].img_size

    def _answer(self, request: GroundingRequest) -> str:
        sample = self.samples[request.sample_id]
        x1, y1, x2, y2 = sample.bbox
        cx, cy = ((x1 + x2) / 2, (y1 + y2) / 2) if self.right else (sample.width - 1, 1)
        y, x = round(cy / sample.height * 1000), round(cx / sample.width * 1000)
        return json.dumps([{"box_2d": [y, x, y, x], "label": "target"}])


class Factory:
    def __init__(self, backend: FakeBackend | None):
        self.backend = backend
        self.calls = 0

    def __call__(self, config: RunConfig) -> FakeBackend:
        self.calls += 1
        if self.backend is None:
            raise AssertionError("the backend factory must not be called")
        return self.backend


def make_config(root: Path, **overrides: Any) -> RunConfig:
    given = {
        "engine.model": "fake/model",
        "engine.max_soft_tokens": 70,
        "engine.norm": "pre",
        "data.source": str(root),
        "runtime.image_workers": 1,
        "runtime.prefetch": 2,
    }
    return resolve_config(None, {**given, **overrides})


def run(config: RunConfig, out: Path, backend: FakeBackend | None) -> tuple[Any, Factory]:
    factory = Factory(backend)
    return execute_run(config, out, quiet=True, backend_factory=factory), factory


def all_ids(root: Path) -> set[str]:
    return {
        r["id"] for rel in ("annotations/app_linux.json", OTHER_FILE) for r in read_file(root, rel)
    }


def assert_every_sample_accounted_for(result: Any, ids: set[str]) -> None:
    """Records and manifest exclusions together name every sample exactly once."""
    recorded = [r.id for r in result.records]
    excluded = [e.sample_id for e in result.manifest.exclusions]
    assert len(recorded) == len(set(recorded))
    assert not set(recorded) & set(excluded), (recorded, excluded)
    assert set(recorded) | set(excluded) == ids
    assert len(recorded) + len(excluded) == len(ids)
    on_disk = [json.loads(line)["id"] for line in lines_of(result.out)]
    assert sorted(on_disk) == sorted(recorded)
    assert result.manifest.counts.selected == len(recorded)
    assert result.manifest.counts.missing == 0


def lines_of(out: Path) -> list[bytes]:
    return [line for line in (out / "predictions.jsonl").read_bytes().split(b"\n") if line]


# --- HTML and markdown helpers -------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def html_tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser.tags


def _cells(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_markdown_tables_intact(text: str) -> None:
    """There is a table; every table row has the header's cell count, and no cell spills onto
    a loose line."""
    lines = text.split("\n")
    tables = 0
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        if i > 0 and lines[i - 1].startswith("|"):
            continue  # not the first line of a table
        block = [line]
        for following in lines[i + 1 :]:
            if not following.startswith("|"):
                assert following == "" or following.startswith("#"), (
                    f"a table row spills onto the next line: {following[:80]!r}"
                )
                break
            block.append(following)
        widths = {_cells(row) for row in block}
        assert len(widths) == 1, f"table rows with different cell counts: {block[:4]}"
        tables += 1
    assert tables, f"no markdown table at all: {text[:300]!r}"


# === hostile text: one dataset, two runs, a comparison ======================================


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A release whose instructions, ids and names are hostile; runs A (pre, always right) and
    B (post, always wrong), so every sample is a flip drawn in the HTML report."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    write_png(root / "images/app/shot0.png")
    write_png(root / "images/app/shot1.png")
    records = [
        record(
            f"h_{name}",
            f"app/shot{i % 2}.png",
            instruction=text,
            application=HOSTILE_APP if i % 2 else "app",
            group=PIPE_GROUP if i % 3 == 0 else "Office",
            ui_type="icon" if i % 2 else "text",
        )
        for i, (name, text) in enumerate(HOSTILE.items())
    ]
    records.append(record(HOSTILE_ID, "app/shot0.png", instruction="Click plain"))
    write_release(root, {FILE: records})
    loaded = open_dataset(str(root))
    a, b = base / "a", base / "b"
    backend_a = FakeBackend(loaded.samples, variant="pre", right=True)
    result_a, _ = run(make_config(root), a, backend_a)
    result_b, _ = run(
        make_config(root, **{"engine.norm": "post"}),
        b,
        FakeBackend(loaded.samples, variant="post", right=False),
    )
    comparison = compare_runs(a, b, base / "cmp", n_resamples=200)
    return {
        "root": root,
        "loaded": loaded,
        "records": records,
        "backend_a": backend_a,
        "a": result_a,
        "b": result_b,
        "comparison": comparison,
    }


def test_hostile_text_loads_verbatim_in_strict_mode(hostile: dict[str, Any]) -> None:
    loaded = hostile["loaded"]
    assert loaded.exclusions == []
    by_id = {s.id: s for s in loaded.samples}
    for name, text in HOSTILE.items():
        assert by_id[f"h_{name}"].instruction == text, name
    assert by_id[HOSTILE_ID].id == HOSTILE_ID
    assert len(by_id["h_long_100k"].instruction) == 100_007


def test_hostile_text_reaches_the_backend_verbatim(hostile: dict[str, Any]) -> None:
    prompts = hostile["backend_a"].prompts
    assert set(prompts) == {r["id"] for r in hostile["records"]}
    for name, text in HOSTILE.items():
        assert text in prompts[f"h_{name}"], name
    # the placeholder is substituted once: an instruction containing it is not expanded again
    assert "Click {instruction} {0} %s {{x}} $x$" in prompts["h_placeholder_and_format"]


def test_predictions_jsonl_keeps_hostile_text_verbatim_as_valid_json(
    hostile: dict[str, Any],
) -> None:
    out = hostile["a"].out
    raw = (out / "predictions.jsonl").read_bytes()
    for byte in (b"\x00", b"\x1b", b"\r", b"\x1c", b"\x0b"):
        assert byte not in raw, byte  # escaped by JSON, so a line is a line
    lines = lines_of(out)
    assert len(lines) == len(hostile["records"])
    parsed = {d["id"]: d for d in (json.loads(line) for line in lines)}
    expected = {r["id"]: r["instruction"] for r in hostile["records"]}
    assert {k: v["instruction"] for k, v in parsed.items()} == expected
    # the store reads it back unchanged (the reader splits on b"\n" only, not on U+2028 etc.)
    records, repair = RunDir(out).read_records()
    assert {r.id: r.instruction for r in records} == expected
    assert repair.truncated_bytes == 0 and repair.duplicates == []


def test_samples_csv_round_trips_hostile_text_through_pandas(hostile: dict[str, Any]) -> None:
    frame = pd.read_csv(hostile["a"].exports["samples"], keep_default_na=False, dtype=str)
    assert len(frame) == len(hostile["records"])
    got = dict(zip(frame["id"], frame["instruction"], strict=True))
    assert got == {r["id"]: r["instruction"] for r in hostile["records"]}
    assert set(frame["application"]) == {"app", HOSTILE_APP}


def test_summary_markdown_escapes_pipes_in_dataset_names(hostile: dict[str, Any]) -> None:
    summary = hostile["a"].exports["summary"].read_text(encoding="utf-8")
    assert "| Dev\\|Ops |" in summary  # the group name, its pipe escaped
    assert_markdown_tables_intact(summary)


def test_comparison_markdown_tables_survive_hostile_names(hostile: dict[str, Any]) -> None:
    md = hostile["comparison"].files[COMPARISON_MD].read_text(encoding="utf-8")
    assert "## Per application" in md
    assert HOSTILE_APP.replace("|", "\\|") in md
    assert_markdown_tables_intact(md)


def test_html_report_escapes_every_hostile_string(hostile: dict[str, Any]) -> None:
    page = hostile["comparison"].files[REPORT_HTML].read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "<b " not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Click Save" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt; Open" in page
    assert "&lt;b onmouseover=&quot;x&quot;&gt;app&lt;/b&gt;|pipe" in page
    assert "&lt;b&gt;id&lt;/b&gt;&quot;|\\`" in page  # the hostile id, escaped
    assert "&lt;i&gt;" + "x" * 100_000 + "&lt;/i&gt;" in page  # long text kept whole, escaped
    for tag, attrs in html_tags(page):
        assert tag not in ("script", "iframe", "object", "embed", "link", "i"), tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("src", "href"):
            assert attrs.get(name) is None or attrs[name].startswith("data:"), (tag, attrs)
    assert page.count('<figure class="flip"') == len(hostile["records"])  # every sample drawn


def test_flips_csv_round_trips_hostile_text(hostile: dict[str, Any]) -> None:
    frame = pd.read_csv(hostile["comparison"].files[FLIPS_CSV], keep_default_na=False, dtype=str)
    got = dict(zip(frame["id"], frame["instruction"], strict=True))
    assert got == {r["id"]: r["instruction"] for r in hostile["records"]}


def test_newline_in_a_group_name_does_not_break_the_summary_table(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_png(root / "images/app/shot0.png")
    write_release(root, {FILE: [record("s0", "app/shot0.png", group="Dev\nOps")]})
    loaded = open_dataset(str(root))
    result, _ = run(make_config(root), tmp_path / "out", FakeBackend(loaded.samples))
    summary = result.exports["summary"].read_text(encoding="utf-8")
    assert "\n| Dev Ops | 100.00 | 1 |" in summary  # the group's row, its line break a space
    assert_markdown_tables_intact(summary)


# --- the terminal output of `data check` ---------------------------------------------------


def _terminal_check(root: Path, *flags: str) -> Any:
    """`data check` as on a terminal: ``color=True`` keeps escapes click strips from pipes."""
    return CliRunner().invoke(app, ["data", "check", str(root), *flags], color=True)


def test_data_check_prints_no_escape_sequences_from_instructions_ids_or_reasons(
    tmp_path: Path,
) -> None:
    """Instructions are never printed; ids and rejected values are shown as ``repr``."""
    root = tmp_path / "data"
    write_png(root / "images/app/shot0.png")
    records = [
        record(f"h_{name}", "app/shot0.png", instruction=text) for name, text in HOSTILE.items()
    ]
    records.append(record("\x1b[2Jbad\x1b]0;t\x07", "app/shot0.png", ui_type="\x1b[31micon"))
    write_release(root, {FILE: records})
    lenient = _terminal_check(root, "--lenient")
    assert lenient.exit_code == 0, lenient.output
    assert "excluded: 1" in lenient.stdout
    assert "'\\x1b[2Jbad\\x1b]0;t\\x07'" in lenient.stdout  # the id, as a repr
    assert "\x1b" not in lenient.stdout and "\x07" not in lenient.stdout
    strict = _terminal_check(root, "--strict")
    assert strict.exit_code == EXIT_DATA_ERROR
    assert FILE in strict.stderr and "ui_type" in strict.stderr
    assert "\x1b" not in strict.stderr


@pytest.mark.parametrize("where", ["application", "group", "img_filename"])
def test_data_check_does_not_pass_escape_sequences_from_names_to_the_terminal(
    tmp_path: Path, where: str
) -> None:
    root = tmp_path / "data"
    write_png(root / "images/app/shot0.png")
    evil = "\x1b]0;pwned\x07\x1b[2Jx"
    fields = {"img_filename": f"app/{evil}.png"} if where == "img_filename" else {where: evil}
    write_release(root, {FILE: [record("s0", "app/shot0.png"), record("s1", "app/shot0.png")]})
    data = read_file(root, FILE)
    data[1] |= fields
    (root / FILE).write_text(json.dumps(data), encoding="utf-8")
    result = _terminal_check(root, "--lenient")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


# === hostile files ==========================================================================


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """Two annotation files; the victim has its own screenshot, so only it is affected."""
    root = tmp_path / "data"
    write_png(root / "images/app/shot0.png")
    write_png(root / "images/app/shot1.png")
    write_png(root / "images/app/victim.png", BIG)
    write_png(root / "images/tool/shot2.png")
    write_png(tmp_path / "outside/secret.png", BIG)  # a valid image, so only the path is wrong
    write_release(
        root,
        {
            FILE: [
                record("app_0", "app/shot0.png"),
                record(VICTIM, "app/victim.png", img_size=list(BIG), ui_type="icon"),
                record("app_2", "app/shot0.png", ui_type="icon"),
                record("app_3", "app/shot1.png"),
            ],
            OTHER_FILE: [
                record("tool_0", "tool/shot2.png", application="tool", platform="windows"),
                record("tool_1", "tool/shot2.png", application="tool", platform="windows"),
            ],
        },
    )
    return root


def _set_victim_path(root: Path, img_filename: str) -> None:
    data = read_file(root, FILE)
    data[1]["img_filename"] = img_filename
    (root / FILE).write_text(json.dumps(data), encoding="utf-8")


def not_an_image(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "images/app/victim.png").write_bytes(b"<html>this is text with a .png name</html>\n")


def truncated_png(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = root / "images/app/victim.png"
    data = path.read_bytes()
    assert len(data) > 2000
    path.write_bytes(data[: len(data) // 3])  # signature + IHDR intact, pixel data cut


def bomb_over_twice_the_limit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # PIL raises at open (> 2x)


def bomb_in_the_warning_zone(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # PIL only warns (1x .. 2x)


def symlink_to_a_file_outside(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = root / "images/app/victim.png"
    path.unlink()
    os.symlink(root.parent / "outside/secret.png", path)


def symlinked_folder_outside(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.symlink(root.parent / "outside", root / "images/linked")
    _set_victim_path(root, "linked/secret.png")


def dotdot_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_victim_path(root, "../../outside/secret.png")


def absolute_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_victim_path(root, str(root.parent / "outside/secret.png"))


def nul_in_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_victim_path(root, "app/victim.png\x00.txt")


# (make it bad, the reason validation gives or None if it passes validation, the decode reason
# or None if the path check refuses it first)
CASES = {
    "not_an_image": (not_an_image, "not a readable image", "cannot decode app/victim.png"),
    "truncated_png": (truncated_png, None, "cannot decode app/victim.png"),
    "bomb_over_twice_the_limit": (
        bomb_over_twice_the_limit,
        "decompression bomb refused",
        "decompression bomb refused",
    ),
    "bomb_in_the_warning_zone": (
        bomb_in_the_warning_zone,
        "decompression bomb refused: 200x150 exceeds 20000 pixels",
        "decompression bomb refused: app/victim.png is 200x150, over the 20000-pixel limit",
    ),
    "symlink_to_a_file_outside": (
        symlink_to_a_file_outside,
        "image path resolves outside the dataset folder",
        None,
    ),
    "symlinked_folder_outside": (
        symlinked_folder_outside,
        "image path resolves outside the dataset folder",
        None,
    ),
    "dotdot_path": (dotdot_path, "image path escapes the dataset folder ('..')", None),
    "absolute_path": (absolute_path, "absolute image path is not allowed", None),
    "nul_in_path": (nul_in_path, "empty or invalid image path", None),
}
PATH_CASES = [name for name, (_, _, decode) in CASES.items() if decode is None]
CONTENT_CASES = [name for name, (_, _, decode) in CASES.items() if decode is not None]


@pytest.fixture(params=list(CASES))
def bad(request: pytest.FixtureRequest, release: Path, monkeypatch: pytest.MonkeyPatch):
    make, validation, decode = CASES[request.param]
    ids = all_ids(release)
    make(release, monkeypatch)
    return request.param, release, ids, validation, decode


def test_strict_loading_refuses_naming_file_sample_and_field(bad) -> None:
    name, root, _, validation, _ = bad
    if validation is None:  # passes the header check: a defined non-refusal
        loaded = open_dataset(str(root))
        assert loaded.exclusions == [] and VICTIM in {s.id for s in loaded.samples}
        return
    expected_type = UnsafePathError if name in PATH_CASES else InvalidSampleError
    with pytest.raises(expected_type) as caught:
        open_dataset(str(root))
    error = caught.value
    assert (error.file, error.sample_id, error.field) == (FILE, VICTIM, "img_filename")
    message = str(error)
    assert FILE in message and repr(VICTIM) in message and "'img_filename'" in message
    assert validation in message
    assert [p.sample_id for p in error.problems] == [VICTIM]


def test_lenient_loading_excludes_and_lists_only_the_victim(bad) -> None:
    _, root, ids, validation, _ = bad
    loaded = open_dataset(str(root), strict=False)
    if validation is None:
        assert loaded.exclusions == []
        assert {s.id for s in loaded.samples} == ids
        return
    assert [(e.source_file, e.sample_id, e.field) for e in loaded.exclusions] == [
        (FILE, VICTIM, "img_filename")
    ]
    assert validation in loaded.exclusions[0].reason
    assert {s.id for s in loaded.samples} == ids - {VICTIM}


def test_iter_images_yields_a_clear_failure_for_the_victim_only(bad) -> None:
    _, root, _, _, decode = bad
    if decode is None:  # the path check refuses it before any read: see the loading tests
        with pytest.raises(UnsafePathError):
            open_dataset(str(root), check_images=False)
        return
    samples = open_dataset(str(root), strict=False, check_images=False).samples
    results = list(iter_images(samples, root, workers=2, prefetch=2))
    assert [s.id for s, _ in results] == [s.id for s in samples]  # nothing dropped
    failures = {s.id: r for s, r in results if isinstance(r, ImageLoadError)}
    assert set(failures) == {VICTIM}
    failure = failures[VICTIM]
    assert (failure.file, failure.sample_id, failure.field) == (FILE, VICTIM, "img_filename")
    assert decode in str(failure)
    assert all(isinstance(r, Image.Image) for s, r in results if s.id != VICTIM)


def test_lenient_run_accounts_for_every_sample(bad, tmp_path: Path) -> None:
    _, root, ids, validation, decode = bad
    samples = open_dataset(str(root), strict=False, check_images=False).samples
    backend = FakeBackend(samples)
    result, _ = run(make_config(root, **{"data.strict": False}), tmp_path / "out", backend)
    assert result.manifest.status == "complete"
    assert_every_sample_accounted_for(result, ids)
    assert VICTIM not in backend.prompts  # the model never saw it
    if validation is not None:  # excluded, and listed with the reason
        (exclusion,) = result.manifest.exclusions
        assert (exclusion.source_file, exclusion.sample_id, exclusion.field) == (
            FILE,
            VICTIM,
            "img_filename",
        )
        assert validation in exclusion.reason
    else:  # slipped past validation: a failed record saying why
        victim = next(r for r in result.records if r.id == VICTIM)
        assert victim.outcome.value == "failed"
        assert victim.error is not None and victim.error.startswith(f"image: {decode}")


def test_run_without_image_checks_records_a_failure_or_refuses_the_path(
    bad, tmp_path: Path
) -> None:
    """``check_images=False`` (strict): content problems reach decoding and become ``failed``
    records; escaping paths are still refused before any backend starts."""
    _, root, ids, _, decode = bad
    config = make_config(root, **{"data.check_images": False})
    if decode is None:
        with pytest.raises(UnsafePathError, match=re.escape(VICTIM)):
            run(config, tmp_path / "out", None)
        return
    samples = open_dataset(str(root), check_images=False).samples
    result, _ = run(config, tmp_path / "out", FakeBackend(samples))
    assert result.manifest.status == "complete"
    assert result.manifest.exclusions == []
    assert_every_sample_accounted_for(result, ids)
    victim = next(r for r in result.records if r.id == VICTIM)
    assert victim.outcome.value == "failed"
    assert victim.error is not None and victim.error.startswith(f"image: {decode}")
    assert manifest_outcomes(result)["failed"] == 1
    others = [r for r in result.records if r.id != VICTIM]
    assert all(r.outcome.value == "correct" for r in others)


def manifest_outcomes(result: Any) -> dict[str, int]:
    return result.manifest.counts.outcomes


def test_data_check_cli_strict_and_lenient(bad) -> None:
    _, root, _, validation, _ = bad
    runner = CliRunner()
    strict = runner.invoke(app, ["data", "check", str(root), "--strict"])
    lenient = runner.invoke(app, ["data", "check", str(root), "--lenient"])
    assert lenient.exit_code == 0, lenient.output
    if validation is None:  # the header is fine: data check does not decode pixels
        assert strict.exit_code == 0, strict.output
        assert "excluded: 0" in strict.stdout and "Excluded samples: none." in strict.stdout
        return
    assert strict.exit_code == EXIT_DATA_ERROR, strict.output
    assert "invalid dataset: 1 problem(s)" in strict.stderr
    for text in (FILE, repr(VICTIM), "'img_filename'"):
        assert text in strict.stderr
    flat = " ".join(strict.stderr.split())  # reasons wrap at 100 columns
    assert " ".join(validation.split()) in flat
    assert "excluded: 1" in lenient.stdout
    listing = lenient.stdout[lenient.stdout.index("Excluded samples (1):") :]
    assert FILE in listing and repr(VICTIM) in listing and "'img_filename'" in listing


def test_annotation_file_symlinked_outside_the_dataset_is_refused(
    release: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside/private.json"
    outside.write_text(json.dumps([record("leak_0", "app/shot0.png", instruction="secret")]))
    os.symlink(outside, release / "annotations/leak.json")
    with pytest.raises(InvalidSampleError) as caught:
        open_dataset(str(release))
    assert caught.value.file == "annotations/leak.json"
    assert "outside the dataset" in str(caught.value)
    loaded = open_dataset(str(release), strict=False)
    assert "leak_0" not in {s.id for s in loaded.samples}
    assert any(e.source_file == "annotations/leak.json" for e in loaded.exclusions)


# === input drift ============================================================================


def test_resume_after_an_instruction_changed_is_refused_naming_the_file(
    release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    samples = open_dataset(str(release)).samples
    config = make_config(release)
    run(config, out, FakeBackend(samples))
    before = (out / "predictions.jsonl").read_bytes()
    manifest_before = (out / "manifest.json").read_bytes()

    data = read_file(release, OTHER_FILE)
    data[0]["instruction"] = HOSTILE["html_script"]
    (release / OTHER_FILE).write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(RunRefusedError) as caught:
        run(config, out, None)
    message = str(caught.value)
    assert "the dataset changed since this run started" in message
    assert f"changed (1): {OTHER_FILE}" in message
    assert FILE not in message and "images/" not in message  # only what changed is named
    assert "--restart" in message
    assert (out / "predictions.jsonl").read_bytes() == before
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert not (out / ".lock").exists()


def test_resume_after_a_missing_image_appeared_is_refused_naming_it(
    release: Path, tmp_path: Path
) -> None:
    """A lenient run excluded a sample whose screenshot was missing; the file then appears:
    the sample would now run, on inputs the manifest never recorded."""
    out = tmp_path / "out"
    data = read_file(release, FILE)
    data[0]["img_filename"] = "app/late.png"
    (release / FILE).write_text(json.dumps(data), encoding="utf-8")
    config = make_config(release, **{"data.strict": False})
    samples = open_dataset(str(release), strict=False).samples
    first, _ = run(config, out, FakeBackend(samples))
    assert [e.sample_id for e in first.manifest.exclusions] == ["app_0"]
    assert "image file not found" in first.manifest.exclusions[0].reason
    assert_every_sample_accounted_for(first, all_ids(release))

    write_png(release / "images/app/late.png")
    with pytest.raises(RunRefusedError) as caught:
        run(config, out, None)
    message = str(caught.value)
    assert "the dataset changed since this run started" in message
    assert "added (1): images/app/late.png" in message
    assert "changed (" not in message and "removed (" not in message


def test_resume_after_an_image_was_replaced_by_a_symlink_outside_is_refused(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A screenshot swapped for an escaping symlink after the run started: strict resume
    refuses the path naming the sample; lenient resume excludes it and then refuses the drift
    (a recorded input is gone), naming the file."""
    out = tmp_path / "out"
    samples = open_dataset(str(release)).samples
    run(make_config(release), out, FakeBackend(samples))
    before = (out / "predictions.jsonl").read_bytes()
    symlink_to_a_file_outside(release, monkeypatch)
    with pytest.raises(UnsafePathError) as caught:
        run(make_config(release), out, None)
    assert (caught.value.file, caught.value.sample_id) == (FILE, VICTIM)
    with pytest.raises(RunRefusedError) as refused:
        run(make_config(release, **{"data.strict": False}), out, None)
    assert "removed (1): images/app/victim.png" in str(refused.value)
    assert (out / "predictions.jsonl").read_bytes() == before

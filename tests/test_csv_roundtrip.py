"""Every CSV the tool writes reads back one row per record, with the same text.

Records hold arbitrary text (bare carriage returns, ``\\r\\n``, newlines, quotes, commas, NUL
and other control characters, non-ASCII) in the fields a model or a dataset fills. They are
written with the library's own writers (``write_run_exports``, ``write_comparison_csvs``) and
read back with pandas and with the ``csv`` module; both must give exactly one row per record
and the documented CSV form of each text (``csv_export``'s docstring: the text itself, NUL and
control characters included; lone surrogates and cells over the ``csv`` module's field limit
are tested apart), which the test spells out on its own in :func:`expected`.
"""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import fake_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenspot_eval.report.comparison import (
    COMPARISON_CSV,
    FLIPS_CSV,
    write_comparison,
    write_comparison_csvs,
)
from screenspot_eval.report.csv_export import CSV_CELL_LIMIT, csv_text, write_csv
from screenspot_eval.report.metrics import metrics_table
from screenspot_eval.report.pairing import flips, pair_records
from screenspot_eval.report.run_exports import write_run_exports
from screenspot_eval.stats.slices import compare_slices
from screenspot_eval.store.records import PredictionRecord, records_frame

#: Fields a model, a server or a dataset fills with text of its own.
TEXT_FIELDS = (
    "img_filename",
    "instruction",
    "application",
    "platform",
    "group",
    "source_file",
    "raw_response",
    "error",
    "endpoint",
)
NASTY = [
    *"\r\n\"',;\t\x00\x01\x07\x0b\x0c\x1b\x1f\x7f\x85\\ aZ9é中\u2028\u2029\ufeff|#=",
    "\r\n",
    '""',
    "NA",
    "null",
    "\U0001f600",
]
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(NASTY), max_size=30).map("".join),
)
OPTIONAL_TEXT = st.one_of(st.none(), TEXT)
OUTCOMES = ("correct", "wrong", "wrong_format", "failed")


def expected(value: Any) -> str:
    """The documented CSV form of a text of at most CSV_CELL_LIMIT characters without lone
    surrogates: the text itself (NUL and other control characters included); None is empty."""
    if value is None or (isinstance(value, float) and value != value):  # None, or NaN for it
        return ""
    assert len(value) <= CSV_CELL_LIMIT and not re.search(r"[\ud800-\udfff]", value)
    return value


def make_record(i: int, texts: dict[str, Any], outcome: str, variant: str) -> PredictionRecord:
    click = outcome in ("correct", "wrong")
    return PredictionRecord(
        id=texts["id"],
        img_filename=texts["img_filename"],
        img_size=(640, 480),
        bbox=(10.0, 20.0, 30.5, 40.0),
        instruction=texts["instruction"],
        language="en" if i % 2 else "cn",
        application=texts["application"],
        platform=texts["platform"],
        group=texts["group"],
        ui_type="text" if i % 2 else "icon",
        source_file=texts["source_file"],
        prompt_hash="abc",
        convention="yx-1000",
        variant=variant,
        raw_response=None if outcome == "failed" else texts["raw_response"],
        parse_status=None if outcome == "failed" else ("parsed" if click else "failed"),
        failure_kind="no_coordinates" if outcome == "wrong_format" else None,
        answer_format="point_2d" if click else None,
        out_of_image=False if click else None,
        outcome=outcome,
        pred_x=20.0 if click else None,
        pred_y=30.0 if click else None,
        distance_px=0.0 if click else None,
        error=texts["error"] if outcome == "failed" else None,
        attempts=1,
        latency_s=0.25,
        prompt_tokens=10,
        completion_tokens=5,
        endpoint=texts["endpoint"],
    )


@st.composite
def record_pairs(draw: st.DrawFn) -> tuple[list[PredictionRecord], list[PredictionRecord]]:
    """Runs A and B over the same 1-6 samples (unique ids, arbitrary text)."""
    ids = draw(st.lists(TEXT, min_size=1, max_size=6, unique=True))
    a, b = [], []
    for i, sample_id in enumerate(ids):
        texts = {"id": sample_id}
        for name in TEXT_FIELDS:
            strategy = OPTIONAL_TEXT if name in ("group", "endpoint", "error") else TEXT
            texts[name] = draw(strategy)
        side_b = {**texts, "raw_response": draw(TEXT), "error": draw(TEXT)}
        a.append(make_record(i, texts, draw(st.sampled_from(OUTCOMES)), "post"))
        b.append(make_record(i, side_b, draw(st.sampled_from(OUTCOMES)), "pre"))
    return a, b


def read_both(path: Path) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The file through pandas (as text) and through the csv module, header checked equal."""
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows and rows[0] == list(frame.columns)
    assert all(len(row) == len(rows[0]) for row in rows), path.name
    return frame, [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def assert_text_columns(
    path: Path, source: pd.DataFrame, columns: tuple[str, ...] | list[str]
) -> None:
    """Both readers give len(source) rows whose ``columns`` are the CSV form of source's."""
    frame, rows = read_both(path)
    assert len(frame) == len(source), path.name
    assert len(rows) == len(source), path.name
    for column in columns:
        want = [expected(v) for v in source[column]]
        assert list(frame[column]) == want, (path.name, column)
        assert [r[column] for r in rows] == want, (path.name, column)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(record_pairs())
def test_every_csv_reads_back_one_row_per_record_with_the_same_text(pair: tuple) -> None:
    a, b = pair
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = write_run_exports(out / "run", a, fake_manifest())
        frame = records_frame(a)
        assert_text_columns(files["samples"], frame, ["id", *TEXT_FIELDS, "outcome"])
        metrics = metrics_table(frame)
        assert_text_columns(files["metrics"], metrics, ["slice", "value"])

        paired = pair_records(records_frame(a), records_frame(b))
        comparison = compare_slices(paired.frame, n_resamples=20)
        flip_frame = flips(paired.frame)
        written = write_comparison_csvs(out / "cmp", comparison, flip_frame)
        table = comparison.table.assign(value=comparison.table["value"].map(str))
        assert_text_columns(written[COMPARISON_CSV], table, ["slice", "value"])
        flip_text = [
            "id",
            "instruction",
            "img_filename",
            "group",
            "application",
            "platform",
            "raw_response_a",
            "raw_response_b",
            "error_a",
            "error_b",
        ]
        assert_text_columns(written[FLIPS_CSV], flip_frame, flip_text)


def test_a_bare_carriage_return_no_longer_makes_phantom_rows(tmp_path: Path) -> None:
    texts = {name: "x" for name in TEXT_FIELDS}
    records = [
        make_record(i, {**texts, "id": f"s{i}", "raw_response": "[1 2]\rfailed"}, "wrong", "pre")
        for i in range(80)
    ]
    files = write_run_exports(tmp_path, records, fake_manifest())
    frame, rows = read_both(files["samples"])
    assert len(frame) == len(rows) == 80
    assert set(frame["raw_response"]) == {"[1 2]\rfailed"}
    assert list(frame["id"]) == [f"s{i}" for i in range(80)]


def test_very_long_text_is_cut_to_what_the_csv_module_reads(tmp_path: Path) -> None:
    long = "é" * 50 + "x" * (3 * CSV_CELL_LIMIT)
    fits = "y" * CSV_CELL_LIMIT
    frame = pd.DataFrame({"id": ["long", "fits"], "text": [long, fits]})
    path = write_csv(frame, tmp_path / "t.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))  # the default field limit
    assert [r[0] for r in rows] == ["id", "long", "fits"]
    cut = rows[1][1]
    assert len(cut) == CSV_CELL_LIMIT and long.startswith(cut.split(" [... ")[0])
    assert cut.endswith("characters cut; full text in predictions.jsonl]")
    n_cut = int(re.search(r"\[\.\.\. (\d+) more", cut)[1])  # type: ignore[index]
    assert len(cut.split(" [... ")[0]) + n_cut == len(long)
    assert rows[2][1] == fits  # exactly at the limit: kept whole
    assert list(pd.read_csv(path, keep_default_na=False, dtype=str)["text"]) == [cut, fits]


def test_lone_surrogates_become_escapes_and_controls_stay(tmp_path: Path) -> None:
    text = "a\ud800b\udfffc\x00d\x1be\tf\rg\nh\x7f\x85"
    assert csv_text(text) == "a\\ud800b\\udfffc\x00d\x1be\tf\rg\nh\x7f\x85"
    frame = pd.DataFrame({"id": ["s"], "text": [text]}, dtype=object)  # arrow strings refuse it
    path = write_csv(frame, tmp_path / "t.csv")
    assert pd.read_csv(path, keep_default_na=False, dtype=str)["text"][0] == csv_text(text)
    with path.open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1] == ["s", csv_text(text)]


def test_numbers_stay_unquoted_and_text_is_quoted(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["1"], "n": [3], "acc": [0.25], "none": [None]})
    path = write_csv(frame, tmp_path / "t.csv")
    assert path.read_bytes() == b'"id","n","acc","none"\n"1",3,0.25,""\n'


@pytest.mark.filterwarnings("ignore")
def test_write_comparison_uses_the_shared_writer(tmp_path: Path) -> None:
    texts = {name: "v\r" for name in TEXT_FIELDS}
    a = [make_record(i, {**texts, "id": f"s\r{i}"}, "correct", "post") for i in range(4)]
    b = [make_record(i, {**texts, "id": f"s\r{i}"}, "wrong", "pre") for i in range(4)]
    paired = pair_records(records_frame(a), records_frame(b))
    comparison = compare_slices(paired.frame, n_resamples=20)
    files = write_comparison(
        tmp_path, paired, comparison, label_a="A", label_b="B", dataset_root=None
    )
    frame, rows = read_both(files[FLIPS_CSV])
    assert list(frame["id"]) == [r["id"] for r in rows] == [f"s\r{i}" for i in range(4)]
    table, _ = read_both(files[COMPARISON_CSV])
    assert len(table) == len(comparison.table)

"""Tests of the A/B comparison outputs: pairing, flips, files, escaping and terminal text."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from screenspot_eval.report.annotate import BOX_COLOUR, annotate
from screenspot_eval.report.comparison import (
    COMPARISON_CSV,
    COMPARISON_MD,
    DELTAS_PNG,
    FLIPS_CSV,
    REPORT_HTML,
    render_terminal,
    write_comparison,
)
from screenspot_eval.report.html_report import pick_flips
from screenspot_eval.report.pairing import UnpairedSamplesError, flips, pair_records
from screenspot_eval.stats.slices import SliceComparison, compare_slices
from screenspot_eval.store.records import PredictionRecord, records_frame

HOSTILE_INSTRUCTION = "<script>alert(1)</script> Click Save"
HOSTILE_ANSWER = '"><img src=x onerror=alert(2)>'
HOSTILE_APP = '<b onmouseover="x">app</b>'
LABEL_A, LABEL_B = "post-norm", "pre-norm"

# (outcome A, outcome B) per sample: 4 both right, 3 B-only, 2 A-only, the rest both wrong.
OUTCOMES = [
    ("wrong", "correct"),  # sample 0: hostile text, a B gain
    ("correct", "correct"),
    ("correct", "wrong"),
    ("wrong_format", "correct"),
    ("correct", "correct"),
    ("failed", "correct"),
    ("correct", "wrong_format"),
    ("wrong", "wrong"),
    ("correct", "correct"),
    ("wrong", "failed"),
    ("correct", "correct"),
    ("wrong", "wrong"),
]
SHOTS = (("vscode_mac/shot_0.png", (320, 200)), ("excel_mac/shot_1.png", (2000, 1000)))


def _record(i: int, variant: str, outcome: str, *, bbox_shift: float = 0.0) -> PredictionRecord:
    name, size = SHOTS[i % len(SHOTS)]
    x1, y1 = 20.0 + 10 * i + bbox_shift, 30.0
    bbox = (x1, y1, x1 + 40.0, y1 + 30.0)
    inside = (x1 + 20.0, y1 + 15.0)
    has_click = outcome in ("correct", "wrong")
    if outcome == "correct":
        click = inside
    elif i == 7 and variant == "pre":
        click = (size[0] + 500.0, -20.0)  # outside the image
    else:
        click = (size[0] - 10.0, size[1] - 10.0)
    hostile = i == 0
    return PredictionRecord(
        id=f"<i>s{i}</i>" if hostile else f"s{i}",
        img_filename=name,
        img_size=size,
        bbox=bbox,
        instruction=HOSTILE_INSTRUCTION if hostile else f"Click item {i}",
        language="en",
        application=HOSTILE_APP if hostile else ("vscode" if i % 2 == 0 else "excel"),
        platform="macos",
        group=("Dev", "Office", "CAD")[i % 3],
        ui_type="text" if i % 2 else "icon",
        source_file="annotations/x.json",
        prompt_hash="abc",
        convention="yx-1000",
        variant=variant,
        raw_response=(HOSTILE_ANSWER if hostile and variant == "post" else f"({i}, {variant})")
        if outcome != "failed"
        else None,
        parse_status="parsed" if has_click else ("failed" if outcome == "wrong_format" else None),
        failure_kind="no_numbers" if outcome == "wrong_format" else None,
        answer_format="point" if has_click else None,
        out_of_image=False if has_click else None,
        outcome=outcome,
        pred_x=click[0] if has_click else None,
        pred_y=click[1] if has_click else None,
        distance_px=0.0 if outcome == "correct" else (5.0 if has_click else None),
        error="HTTP 500 <oops>" if outcome == "failed" else None,
        attempts=1,
        latency_s=0.1,
        prompt_tokens=10,
        completion_tokens=5,
    )


def make_frames(outcomes: list[tuple[str, str]] = OUTCOMES) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = records_frame([_record(i, "post", oa) for i, (oa, _) in enumerate(outcomes)])
    b = records_frame([_record(i, "pre", ob) for i, (_, ob) in enumerate(outcomes)])
    return a, b


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Real PNG screenshots in the official layout: ``images/<folder>/<file>.png``."""
    root = tmp_path / "data"
    for name, size in SHOTS:
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 200, 200)).save(path)
    return root


def _compare(frame: pd.DataFrame) -> SliceComparison:
    return compare_slices(frame, n_resamples=200)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def _write(tmp_path: Path, root: Path | None, **kwargs) -> tuple[dict[str, Path], SliceComparison]:
    paired = pair_records(*make_frames(), shared_only=kwargs.pop("shared_only", False))
    comparison = _compare(paired.frame)
    files = write_comparison(
        tmp_path / "out",
        paired,
        comparison,
        label_a=LABEL_A,
        label_b=LABEL_B,
        dataset_root=root,
        notes=["one engine: <switched>"],
        **kwargs,
    )
    return files, comparison


def test_unequal_ids_are_refused_with_ids_listed() -> None:
    a, b = make_frames()
    b = b.loc[b["id"] != "s3"]
    a = a.loc[a["id"] != "s5"]
    with pytest.raises(UnpairedSamplesError) as info:
        pair_records(a, b)
    message = str(info.value)
    assert "1 only in A (s3)" in message and "1 only in B (s5)" in message
    assert "--shared-only" in message and "10 shared" in message
    assert info.value.only_a == ["s3"] and info.value.only_b == ["s5"]


def test_many_unpaired_ids_are_cut_in_the_message() -> None:
    a, b = make_frames([("correct", "correct")] * 25)
    with pytest.raises(UnpairedSamplesError) as info:
        pair_records(a, b.iloc[:0])
    message = str(info.value)
    assert "25 only in A (<i>s0</i>, s1, " in message and ", s19, ... (5 more))" in message
    assert "s20" not in message and "0 only in B (none)" in message


def test_shared_only_keeps_the_intersection_and_records_drops() -> None:
    a, b = make_frames()
    paired = pair_records(a.loc[a["id"] != "s3"], b.loc[b["id"] != "s5"], shared_only=True)
    assert paired.shared_only and paired.only_a == ["s5"] and paired.only_b == ["s3"]
    assert paired.n == len(OUTCOMES) - 2
    assert not {"s3", "s5"} & set(paired.frame["id"])


def test_paired_frame_columns_and_flags() -> None:
    paired = pair_records(*make_frames())
    frame = paired.frame
    assert list(frame["id"])[1:] == [f"s{i}" for i in range(1, len(OUTCOMES))]
    assert (frame["cluster"] == frame["img_filename"]).all()
    for side, k in (("a", 0), ("b", 1)):
        expected = [o[k] for o in OUTCOMES]
        assert list(frame[f"outcome_{side}"]) == expected
        assert list(frame[f"correct_{side}"]) == [o == "correct" for o in expected]
        assert list(frame[f"wrong_format_{side}"]) == [o == "wrong_format" for o in expected]
        assert list(frame[f"failed_{side}"]) == [o == "failed" for o in expected]
        for name in ("pred_x", "pred_y", "raw_response", "error"):
            assert f"{name}_{side}" in frame.columns
    assert paired.differing == {}
    assert not paired.shared_only and paired.only_a == [] and paired.only_b == []


def test_duplicate_ids_and_differing_boxes() -> None:
    a, b = make_frames()
    with pytest.raises(ValueError, match="twice"):
        pair_records(pd.concat([a, a.iloc[:1]]), b)
    b_shifted = records_frame(
        [_record(i, "pre", ob, bbox_shift=5.0 * (i == 4)) for i, (_, ob) in enumerate(OUTCOMES)]
    )
    assert pair_records(a, b_shifted).differing == {"bbox": ["s4"]}


def test_flips_are_the_discordant_pairs() -> None:
    paired = pair_records(*make_frames())
    flipped = flips(paired.frame)
    gains = [f"s{i}" for i, (oa, ob) in enumerate(OUTCOMES) if ob == "correct" != oa]
    losses = [f"s{i}" for i, (oa, ob) in enumerate(OUTCOMES) if oa == "correct" != ob]
    gains[0] = "<i>s0</i>"
    assert list(flipped["id"]) == gains + losses
    assert list(flipped["direction"]) == ["b_only"] * len(gains) + ["a_only"] * len(losses)
    row = _compare(paired.frame).overall()
    assert len(flipped) == row["a_only"] + row["b_only"]
    for name in ("instruction", "bbox", "pred_x_a", "pred_y_b", "outcome_a", "raw_response_b"):
        assert name in flipped.columns


def test_every_file_is_written_and_tables_agree(tmp_path: Path, dataset: Path) -> None:
    files, comparison = _write(tmp_path, dataset)
    names = {COMPARISON_CSV, FLIPS_CSV, COMPARISON_MD, DELTAS_PNG, REPORT_HTML}
    assert set(files) == names
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())

    csv = pd.read_csv(files[COMPARISON_CSV], keep_default_na=False, na_values=[""])
    table = comparison.table
    assert list(csv.columns) == list(table.columns) and len(csv) == len(table)
    assert list(csv["slice"]) == list(table["slice"])
    assert list(csv["value"].astype(str)) == [str(v) for v in table["value"]]
    for column in ("n", "acc_a", "acc_b", "delta_pp", "ci_low_pp", "p", "p_mcnemar", "p_holm"):
        assert csv[column].to_numpy() == pytest.approx(table[column].to_numpy(), nan_ok=True)

    flipped = pd.read_csv(files[FLIPS_CSV])
    assert len(flipped) == 5
    assert set(flipped["direction"]) == {"a_only", "b_only"}
    assert flipped.loc[flipped["id"] == "s2", "bbox"].item() == "[40, 30, 80, 60]"

    md = files[COMPARISON_MD].read_text(encoding="utf-8")
    headline = comparison.headline(LABEL_A, LABEL_B)
    assert f"**{headline}**" in md
    assert re.search(
        r"pre-norm vs post-norm: [+-]\d+\.\d pp \[-?\d+\.\d, -?\d+\.\d\], "
        r"screenshot sign-flip p [=<] [\d.]+, item McNemar p [=<] [\d.]+, \d+ paired samples in "
        r"\d+ screenshots",
        md,
    )
    # Every view says which unit each figure is about.
    assert "Interval and p are about screenshots" in md and "conditional on these items" in md
    assert "| McNemar p |" in md and "Test over screenshots (the headline p)" in md
    assert "80 % power for the test over screenshots (assumes normal approximation" in md
    for text in ("## Per group", "## Per UI type", "## Per application", "## Per platform"):
        assert text in md
    assert "one engine: <switched>" in md and "fractions in [0, 1]" in md
    assert "Bootstrap seed" in md and "Resample unit" in md and "Minimum detectable" in md
    assert "| **A correct** | 4 | 2 |" in md and "| **A wrong** | 3 | 3 |" in md

    with Image.open(files[DELTAS_PNG]) as chart:
        assert chart.format == "PNG" and chart.width > 300


def test_html_escapes_hostile_text_and_inlines_screenshots(tmp_path: Path, dataset: Path) -> None:
    files, comparison = _write(tmp_path, dataset)
    page = files[REPORT_HTML].read_text(encoding="utf-8")
    for raw in (HOSTILE_INSTRUCTION, HOSTILE_ANSWER, HOSTILE_APP, "<i>s0</i>", "<switched>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    parsed = _parse(page)
    tags = [t for t, _ in parsed.tags]
    assert "script" not in tags and "b" in tags  # <b> only from the report's own markup
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("src", "href"):
            assert attrs.get(name) is None or attrs[name].startswith("data:"), (tag, attrs)
        assert tag not in ("link", "iframe", "object")
    assert comparison.headline(LABEL_A, LABEL_B) in "".join(parsed.text)
    flips_part = page[page.index('<section id="flips">') :]
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', flips_part)) == 5
    assert 'src="data:image/png;base64,' in page  # the chart
    assert "outside the 2000x1000 image" not in page  # s7 is not a flip
    assert "placeholder" not in flips_part.replace('class="placeholder"', "")
    assert 'class="placeholder"' not in flips_part


def test_annotated_screenshot_is_downscaled_with_the_box_drawn(dataset: Path) -> None:
    paired = pair_records(*make_frames())
    row = flips(paired.frame).set_index("id").loc["s3"].to_dict() | {"id": "s3"}
    shot = annotate(row, dataset, max_width=960)
    assert shot.data_uri is not None and shot.problem is None
    data = base64.b64decode(shot.data_uri.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (960, 480)
        x1, y1 = (20 + 30) * 0.48, 30 * 0.48  # bbox of s3 scaled by 960 / 2000
        pixel = image.convert("RGB").getpixel((int(x1) + 10, int(y1)))
    assert abs(pixel[1] - BOX_COLOUR[1]) < 60 and pixel[0] < 100  # green box edge


def test_click_outside_the_image_is_noted(dataset: Path) -> None:
    outcomes = [("correct", "correct")] * 7 + [("correct", "wrong")]
    paired = pair_records(*make_frames(outcomes))
    row = flips(paired.frame).iloc[0].to_dict()
    shot = annotate(row, dataset)
    assert shot.data_uri is not None
    assert any("outside the 2000x1000 image" in note for note in shot.notes)


def test_missing_images_and_root_give_placeholders(tmp_path: Path, dataset: Path) -> None:
    (dataset / "images" / SHOTS[1][0]).unlink()
    files, _ = _write(tmp_path, dataset)
    flips_part = files[REPORT_HTML].read_text(encoding="utf-8").split('<section id="flips">')[1]
    assert "screenshot not found: images/excel_mac/shot_1.png" in flips_part
    assert 'src="data:image/jpeg;base64,' in flips_part  # the other screenshot is still drawn

    files, _ = _write(tmp_path / "none", None)
    page = files[REPORT_HTML].read_text(encoding="utf-8")
    assert page.count('class="placeholder"') == 5 and "data:image/jpeg" not in page

    unsafe = {"id": "x", "img_filename": "../../etc/passwd", "img_size": (10, 10)}
    shot = annotate(unsafe, dataset)
    assert shot.data_uri is None and "escapes the dataset" in (shot.problem or "")


def test_flip_images_are_capped_and_balanced(tmp_path: Path, dataset: Path) -> None:
    files, _ = _write(tmp_path, dataset, max_flip_images=2)
    page = files[REPORT_HTML].read_text(encoding="utf-8")
    assert page.count('<figure class="flip"') == 2
    assert "3 more are not shown here" in page
    picked = pick_flips(flips(pair_records(*make_frames()).frame), 2)
    assert sorted(picked["direction"]) == ["a_only", "b_only"]


def test_no_flips(tmp_path: Path, dataset: Path) -> None:
    outcomes = [("correct", "correct"), ("wrong", "wrong"), ("failed", "wrong_format")] * 3
    paired = pair_records(*make_frames(outcomes))
    comparison = _compare(paired.frame)
    files = write_comparison(
        tmp_path, paired, comparison, label_a="A", label_b="B", dataset_root=dataset
    )
    assert len(pd.read_csv(files[FLIPS_CSV])) == 0
    page = files[REPORT_HTML].read_text(encoding="utf-8")
    assert "No flips." in page and "Flipped samples (0)" in page
    md = files[COMPARISON_MD].read_text(encoding="utf-8")
    assert "B vs A: +0.0 pp" in md and "no sign pattern of these screenshots could reach" in md


def test_shared_only_lists_unpaired_ids(tmp_path: Path, dataset: Path) -> None:
    a, b = make_frames()
    paired = pair_records(a, b.loc[b["id"] != "s11"], shared_only=True)
    files = write_comparison(
        tmp_path,
        paired,
        _compare(paired.frame),
        label_a=LABEL_A,
        label_b=LABEL_B,
        dataset_root=dataset,
    )
    md = files[COMPARISON_MD].read_text(encoding="utf-8")
    assert "**Only in A** (1): `s11`" in md and "**Only in B** (0): none" in md
    assert "Only in A (1)" in files[REPORT_HTML].read_text(encoding="utf-8")


def test_terminal_lines_fit_in_100_columns() -> None:
    a, b = make_frames()
    b["group"] = ["A very long group name that goes on and on " * 2] * len(b)
    a["group"] = b["group"]
    paired = pair_records(a, b)
    comparison = _compare(paired.frame)
    text = render_terminal(comparison, label_a="post-norm " * 8, label_b="pre-norm " * 8)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert lines[0].startswith("pre-norm")
    assert any(line.startswith("overall") for line in lines)
    assert any(line.startswith("A very long group") for line in lines)
    short = render_terminal(_compare(pair_records(*make_frames()).frame), label_a="A", label_b="B")
    headline = _compare(pair_records(*make_frames()).frame).headline("A", "B")
    assert " ".join(line.strip() for line in short.splitlines()[:2]) == headline  # wrapped
    assert "McNemar p is the conventional item-level test" in " ".join(short.splitlines())
    assert all(g in short for g in ("Dev", "Office", "CAD"))


def test_hostile_labels_are_escaped_and_dollars_do_not_break_the_chart(tmp_path: Path) -> None:
    paired = pair_records(*make_frames())
    label_a, label_b = "<script>alert(3)</script>", 'run $x$ "><img src=y onerror=z>'
    files = write_comparison(
        tmp_path,
        paired,
        _compare(paired.frame),
        label_a=label_a,
        label_b=label_b,
        dataset_root=None,
    )
    page = files[REPORT_HTML].read_text(encoding="utf-8")
    assert label_a not in page and label_b not in page
    parsed = _parse(page)
    assert "script" not in [t for t, _ in parsed.tags]
    assert all(not any(n.startswith("on") for n in attrs) for _, attrs in parsed.tags)
    assert files[DELTAS_PNG].stat().st_size > 0

"""Dataset layouts beside ScreenSpot-Pro (issue 31): ScreenSpot-v2 and OSWorld-G.

Synthetic releases in each layout's exact file layout load into the same ``Sample`` model
(xywh boxes as corners, polygons with their bounding box, refusal items without a box), count
against the published totals, and boxes that do not fit the declared format are named problems
that say what to fix. ScreenSpot-Pro stays the default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.data.check import check_dataset
from screenspot_eval.data.errors import (
    DatasetLayoutError,
    DatasetUnavailableError,
    InvalidSampleError,
)
from screenspot_eval.data.fingerprint import fingerprint_dataset
from screenspot_eval.data.images import decode_image
from screenspot_eval.data.layouts import LAYOUT_NAMES, UnknownLayoutError, get_layout
from screenspot_eval.data.synth_layouts import synthesize
from screenspot_eval.data.validate import load_release, open_dataset
from screenspot_eval.errors import UserError

SSV2_FILES = ["screenspot_desktop_v2.json", "screenspot_mobile_v2.json", "screenspot_web_v2.json"]
SSV2_KEYS = ["img_filename", "bbox", "instruction", "data_type", "data_source"]
OSWG_KEYS = ["id", "image_path", "image_size", "instruction", "box_type", "box_coordinates",
             "GUI_types"]  # fmt: skip


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ssv2")
    synthesize("screenspot-v2", root, 24, seed=2, max_width=96)
    return root


@pytest.fixture(scope="module")
def oswg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("oswg")
    synthesize("osworld-g", root, 30, seed=4, max_width=160)
    return root


def _rewrite(path: Path, index: int, **fields: object) -> None:
    records = json.loads(path.read_text())
    records[index].update(fields)
    path.write_text(json.dumps(records))


# --- the layouts as declared ------------------------------------------------------------------


def test_screenspot_pro_stays_the_default_and_every_layout_is_declared_once() -> None:
    assert get_layout().name == get_layout(None).name == "screenspot-pro"
    assert set(LAYOUT_NAMES) >= {"screenspot-pro", "screenspot-v2", "osworld-g"}
    for name in LAYOUT_NAMES:
        layout = get_layout(name)
        assert layout.name == name and layout.results_json.endswith(".json")
        assert all(p.source for p in layout.published)  # every published fact has its source


def test_an_unknown_layout_is_a_one_line_user_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownLayoutError) as caught:
        get_layout("screenspot-v3")
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, UserError)
    assert all(name in message for name in LAYOUT_NAMES)


# --- ScreenSpot-v2 ----------------------------------------------------------------------------


def test_screenspot_v2_synth_writes_the_exact_release_layout(ssv2: Path) -> None:
    assert sorted(p.name for p in ssv2.glob("*.json")) == SSV2_FILES
    assert (ssv2 / "screenspotv2_image").is_dir() and not (ssv2 / "annotations").exists()
    for name in SSV2_FILES:
        records = json.loads((ssv2 / name).read_text())
        assert records and all(list(r) == SSV2_KEYS for r in records)
        assert {r["data_type"] for r in records} == {"text", "icon"}
        for r in records:
            assert (ssv2 / "screenspotv2_image" / r["img_filename"]).is_file()
            assert all(isinstance(v, int) for v in r["bbox"])  # [x, y, w, h] pixels


def test_screenspot_v2_loads_with_xywh_converted_and_sizes_from_the_png(ssv2: Path) -> None:
    loaded = open_dataset(str(ssv2), layout="screenspot-v2")
    assert loaded.layout == "screenspot-v2" and not loaded.exclusions
    assert len(loaded.samples) == 24
    raw = {
        (name, i): r
        for name in SSV2_FILES
        for i, r in enumerate(json.loads((ssv2 / name).read_text()))
    }
    for s in loaded.samples:
        platform, index = s.id.rsplit("_", 1)
        record = raw[(f"screenspot_{platform}_v2.json", int(index))]
        x, y, w, h = record["bbox"]
        assert s.bbox == (x, y, x + w, y + h)
        assert s.platform == s.group == platform and s.ui_type == record["data_type"]
        assert s.application == record["data_source"] and s.target == "box"
        assert s.image_dir == "screenspotv2_image" and s.layout == "screenspot-v2"
        image = decode_image(s, loaded.root)  # the image stream finds the layout's folder
        assert not isinstance(image, Exception) and image.size == s.img_size


def test_screenspot_v2_check_counts_platform_by_ui_type(ssv2: Path) -> None:
    report = check_dataset(str(ssv2), layout="screenspot-v2")
    rows = {(r.slice, r.value): r for r in report.accounting.rows}
    assert rows[("total", "all")].actual == 24 and rows[("total", "all")].published == 1272
    assert sum(rows[("platform", p)].actual for p in ("desktop", "mobile", "web")) == 24
    assert rows[("platform", "mobile")].published == 501
    assert any(key[0] == "platform/ui_type" for key in rows)
    text = report.render()
    assert "Differences from the published counts" in text and "(published 1272, -1248)" in text


def test_a_full_size_synthetic_screenspot_v2_matches_every_published_count(tmp_path: Path) -> None:
    synthesize("screenspot-v2", tmp_path, 1272, seed=0, max_width=16)
    report = check_dataset(str(tmp_path), layout="screenspot-v2", check_images=False)
    assert report.accounting.matches_published, report.render()


def test_corners_in_a_widths_layout_are_named_with_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    synthesize("screenspot-v2", root, 6, seed=2, max_width=400)
    file = root / "screenspot_mobile_v2.json"
    record = json.loads(file.read_text())[0]
    with Image.open(root / "screenspotv2_image" / record["img_filename"]) as image:
        width, height = image.size
    corners = [width * 6 // 10, height // 2, width * 9 // 10, height * 6 // 10]
    _rewrite(file, 0, bbox=corners)  # what an xyxy copy would hold
    with pytest.raises(InvalidSampleError) as caught:
        load_release(root, layout="screenspot-v2")
    error = caught.value
    assert (error.file, error.sample_id, error.field) == (
        "screenspot_mobile_v2.json",
        "mobile_0",
        "bbox",
    )
    assert "as corners [x1, y1, x2, y2] it fits" in error.reason and "w = x2 - x1" in error.reason
    lenient = load_release(root, layout="screenspot-v2", strict=False)
    assert [e.sample_id for e in lenient.exclusions] == ["mobile_0"]
    assert "mobile_0" not in {s.id for s in lenient.samples}


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ([0.1, 0.2, 0.05, 0.04], "normalised coordinates"),
        ([10, 10, 0, 5], "needs both > 0"),
        ([10, 10, 5000, 5], "outside the"),
        ([1, 2, 3], "four finite numbers"),
    ],
)
def test_boxes_that_do_not_fit_the_declared_format_are_never_a_silent_zero(
    tmp_path: Path, bbox: list[float], expected: str
) -> None:
    synthesize("screenspot-v2", tmp_path, 6, seed=2, max_width=400)
    _rewrite(tmp_path / "screenspot_web_v2.json", 0, bbox=bbox)
    loaded = load_release(tmp_path, layout="screenspot-v2", strict=False)
    (exclusion,) = loaded.exclusions
    assert exclusion.sample_id == "web_0" and exclusion.field == "bbox"
    assert expected in exclusion.reason


def test_a_missing_release_file_is_named_and_a_wrong_folder_is_refused(tmp_path: Path) -> None:
    synthesize("screenspot-v2", tmp_path, 6, seed=2, max_width=64)
    (tmp_path / "screenspot_web_v2.json").unlink()
    loaded = load_release(tmp_path, layout="screenspot-v2", strict=False)
    assert any(e.source_file == "screenspot_web_v2.json" and e.sample_id is None
               for e in loaded.exclusions)  # fmt: skip
    with pytest.raises(DatasetLayoutError, match=r"not a ScreenSpot-Pro|no annotations"):
        open_dataset(str(tmp_path))  # the default layout does not read it
    with pytest.raises(DatasetLayoutError, match="not a OSWorld-G folder"):
        open_dataset(str(tmp_path), layout="osworld-g")


def test_new_layouts_refuse_the_default_hub_dataset_and_parquet_with_the_fix() -> None:
    with pytest.raises(DatasetUnavailableError, match="--layout osworld-g needs --data"):
        open_dataset("likaixin/ScreenSpot-Pro", layout="osworld-g")
    with pytest.raises(Exception, match="parquet mirrors are read in the screenspot-pro"):
        open_dataset("parquet:some/mirror", layout="screenspot-v2")


def test_zipped_screenshots_are_named_with_the_unzip_command(tmp_path: Path) -> None:
    synthesize("screenspot-v2", tmp_path, 3, seed=2, max_width=64)
    (tmp_path / "screenspotv2_image").rename(tmp_path / "elsewhere")
    (tmp_path / "screenspotv2_image.zip").write_bytes(b"PK")
    with pytest.raises(DatasetLayoutError, match="unzip"):
        open_dataset(str(tmp_path), layout="screenspot-v2")


# --- OSWorld-G --------------------------------------------------------------------------------


def test_osworld_g_synth_writes_the_release_layout_with_every_target_kind(oswg: Path) -> None:
    records = json.loads((oswg / "OSWorld-G.json").read_text())
    assert all(list(r) == OSWG_KEYS for r in records)
    assert {r["box_type"] for r in records} == {"bbox", "polygon", "refusal"}
    classified = json.loads((oswg / "classification_result.json").read_text())["classified"]
    assert set(classified) == set(get_layout("osworld-g").categories)
    assert all((oswg / "images" / r["image_path"]).is_file() for r in records)


def test_osworld_g_loads_boxes_polygons_and_refusals(oswg: Path) -> None:
    loaded = open_dataset(str(oswg), layout="osworld-g")
    records = {r["id"]: r for r in json.loads((oswg / "OSWorld-G.json").read_text())}
    assert not loaded.exclusions and len(loaded.samples) == len(records) == 30
    kinds = {s.target for s in loaded.samples}
    assert kinds == {"box", "polygon", "refusal"}
    for s in loaded.samples:
        record = records[s.id]
        assert s.img_size == tuple(record["image_size"])
        assert s.application is s.platform is s.ui_type is s.group is None
        if s.target == "box":
            x, y, w, h = record["box_coordinates"]
            assert s.bbox == (x, y, x + w, y + h) and s.polygon is None
        elif s.target == "polygon":
            coords = record["box_coordinates"]
            assert s.polygon == tuple(float(v) for v in coords)
            assert s.bbox == (min(coords[0::2]), min(coords[1::2]),
                              max(coords[0::2]), max(coords[1::2]))  # fmt: skip
        else:
            assert s.bbox is None and s.polygon is None and s.categories == ("refusal",)
    assert any(s.categories == () for s in loaded.samples)  # an unclassified one
    assert any(len(s.categories) == 2 for s in loaded.samples)  # an item in two categories


def test_osworld_g_check_counts_categories_and_target_kinds(tmp_path: Path) -> None:
    synthesize("osworld-g", tmp_path, 564, seed=0, max_width=16)
    report = check_dataset(str(tmp_path), layout="osworld-g", check_images=False)
    rows = {(r.slice, r.value): r for r in report.accounting.rows}
    assert (rows[("target", "refusal")].actual, rows[("target", "refusal")].published) == (54, 54)
    assert rows[("target", "polygon")].actual == 40 and rows[("total", "all")].actual == 564
    assert report.accounting.matches_published
    assert rows[("category", "unclassified")].actual == 1
    assert "category" in report.render() and "refusal" in report.render()


def test_osworld_g_refined_reads_its_own_file(tmp_path: Path) -> None:
    synthesize("osworld-g-refined", tmp_path, 6, seed=1, max_width=64)
    assert (tmp_path / "OSWorld-G_refined.json").is_file()
    assert not (tmp_path / "OSWorld-G.json").exists()
    assert len(open_dataset(str(tmp_path), layout="osworld-g-refined").samples) == 6


@pytest.mark.parametrize(
    ("coords", "expected"),
    [
        ([10, 10, 20, 10], "at least three points"),
        ([10, 10, 20, 10, 30], "at least three points"),
        ([0.1, 0.1, 0.5, 0.1, 0.1, 0.5], "normalised"),
        ([10, 10, 20, 10, 9999, 20], "outside the"),
        ([10, 10, 20, 10, 30, 10], "no area"),
    ],
)
def test_bad_polygons_are_named(tmp_path: Path, coords: list[float], expected: str) -> None:
    synthesize("osworld-g", tmp_path, 20, seed=4, max_width=160)
    file = tmp_path / "OSWorld-G.json"
    records = json.loads(file.read_text())
    index = next(i for i, r in enumerate(records) if r["box_type"] == "polygon")
    _rewrite(file, index, box_coordinates=coords)
    loaded = load_release(tmp_path, layout="osworld-g", strict=False)
    (exclusion,) = loaded.exclusions
    assert exclusion.sample_id == records[index]["id"] and exclusion.field == "box_coordinates"
    assert expected in exclusion.reason


def test_an_unknown_box_type_and_a_refusal_without_coordinates(tmp_path: Path) -> None:
    synthesize("osworld-g", tmp_path, 20, seed=4, max_width=160)
    file = tmp_path / "OSWorld-G.json"
    records = json.loads(file.read_text())
    refusal = next(i for i, r in enumerate(records) if r["box_type"] == "refusal")
    _rewrite(file, refusal, box_coordinates=None)  # a refusal's coordinates are not read
    _rewrite(file, 0 if refusal else 1, box_type="ellipse")
    loaded = load_release(tmp_path, layout="osworld-g", strict=False)
    (exclusion,) = loaded.exclusions
    assert exclusion.field == "box_type" and "ellipse" in exclusion.reason


def test_no_classification_file_is_a_note_and_every_item_unclassified(tmp_path: Path) -> None:
    synthesize("osworld-g", tmp_path, 6, seed=4, max_width=64)
    (tmp_path / "classification_result.json").unlink()
    loaded = load_release(tmp_path, layout="osworld-g")
    assert len(loaded.samples) == 6 and all(s.categories == () for s in loaded.samples)
    assert loaded.notes and "unclassified" in loaded.notes[0]


def test_the_fingerprint_covers_the_layout_files_and_the_classification(oswg: Path) -> None:
    loaded = load_release(oswg, layout="osworld-g")
    files = fingerprint_dataset(oswg, loaded.samples)
    assert "OSWorld-G.json" in files and "classification_result.json" in files
    assert all(name.startswith("images/") for name in files if name.endswith(".png"))


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "marker"),
    [
        ("screenspot-v2", "screenspot_mobile_v2.json"),
        ("osworld-g", "OSWorld-G.json"),
        ("screenspot-pro", "annotations"),
    ],
)
def test_cli_synth_then_check_in_each_layout(tmp_path: Path, layout: str, marker: str) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["data", "synth", str(tmp_path), "--n", "18", "--max-width", "64", "--layout", layout]
    )
    assert made.exit_code == 0, made.output
    assert "wrote 18 samples" in made.stdout and (tmp_path / marker).exists()
    checked = runner.invoke(app, ["data", "check", str(tmp_path), "--layout", layout])
    assert checked.exit_code == 0, checked.output
    assert "18" in checked.stdout
    if layout != "screenspot-pro":
        assert f"layout: {layout}" in checked.stdout and "published" in checked.stdout


def test_cli_unknown_layout_and_like_official_elsewhere_are_user_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    wrong = runner.invoke(app, ["data", "check", str(tmp_path), "--layout", "nope"])
    assert wrong.exit_code == 2 and "known layouts: screenspot-pro" in wrong.output
    mixed = runner.invoke(
        app, ["data", "synth", str(tmp_path), "--layout", "osworld-g", "--like-official"]
    )
    assert mixed.exit_code == 2 and "--like-official" in mixed.output


def test_cli_check_in_the_wrong_layout_lists_every_problem(tmp_path: Path) -> None:
    synthesize("screenspot-v2", tmp_path, 6, seed=2, max_width=400)
    file = tmp_path / "screenspot_desktop_v2.json"
    records = json.loads(file.read_text())
    for r in records:
        r["bbox"] = [v / 1000 for v in r["bbox"]]  # normalised numbers in a pixel layout
    file.write_text(json.dumps(records))
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path), "--layout", "screenspot-v2"])
    assert result.exit_code == 3
    assert result.output.count("normalised coordinates") == len(records)

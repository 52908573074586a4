"""Validation: every kind of bad input is named by file, sample id and field, in both modes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.data.errors import InvalidSampleError, UnsafePathError
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.errors import EXIT_DATA_ERROR

FILE = "annotations/vscode_macos.json"
Problem = tuple[str, str | None, str | None]  # (file, sample id, field)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    synthesize_release(root, 24, seed=3, max_width=64)
    return root


def records(root: Path, file: str = FILE) -> list[dict]:
    return json.loads((root / file).read_text())


def rewrite(root: Path, edit: Callable[[dict], None], index: int = 0, file: str = FILE) -> str:
    """Apply ``edit`` to one record and return its id."""
    data = records(root, file)
    edit(data[index])
    (root / file).write_text(json.dumps(data))
    return str(data[index].get("id", f"#{index}"))


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda r: r.__setitem__(key, value)


def malformed_json(root: Path) -> Problem:
    (root / FILE).write_text('[{"id": "x",')
    return FILE, None, None


def not_a_list(root: Path) -> Problem:
    (root / FILE).write_text('{"id": "x"}')
    return FILE, None, None


def missing_field(root: Path) -> Problem:
    return FILE, rewrite(root, lambda r: r.pop("instruction")), "instruction"


def wrong_type_bbox(root: Path) -> Problem:
    return FILE, rewrite(root, _set("bbox", "1,2,3,4")), "bbox"


def wrong_type_img_size(root: Path) -> Problem:
    return FILE, rewrite(root, _set("img_size", [64.5, 36])), "img_size"


def wrong_type_group(root: Path) -> Problem:
    return FILE, rewrite(root, _set("group", 7)), "group"


def bbox_outside(root: Path) -> Problem:
    return FILE, rewrite(root, _set("bbox", [10, 10, 65, 20])), "bbox"


def bbox_inverted(root: Path) -> Problem:
    return FILE, rewrite(root, _set("bbox", [20, 10, 20, 20])), "bbox"


def bbox_y_inverted(root: Path) -> Problem:
    return FILE, rewrite(root, _set("bbox", [1, 20, 5, 10])), "bbox"


def unknown_ui_type(root: Path) -> Problem:
    return FILE, rewrite(root, _set("ui_type", "widget")), "ui_type"


def duplicate_id(root: Path) -> Problem:
    other = "annotations/quartus_windows.json"
    taken = records(root)[0]["id"]
    rewrite(root, _set("id", taken), file=other)
    return other, taken, "id"  # the first file in dataset order; the other copy is named too


def missing_image(root: Path) -> Problem:
    first = records(root)[0]
    (root / "images" / first["img_filename"]).unlink()
    return FILE, first["id"], "img_filename"


def image_size_mismatch(root: Path) -> Problem:
    first = records(root)[0]
    path = root / "images" / first["img_filename"]
    Image.new("RGB", (first["img_size"][0] + 1, first["img_size"][1])).save(path)
    return FILE, first["id"], "img_size"


def not_an_image(root: Path) -> Problem:
    first = records(root)[0]
    (root / "images" / first["img_filename"]).write_bytes(b"this is not a png")
    return FILE, first["id"], "img_filename"


def dotdot_path(root: Path) -> Problem:
    return FILE, rewrite(root, _set("img_filename", "../annotations/x.png")), "img_filename"


def absolute_path(root: Path) -> Problem:
    return FILE, rewrite(root, _set("img_filename", "/etc/passwd")), "img_filename"


def symlink_outside(root: Path) -> Problem:
    outside = root.parent / "outside.png"
    first = records(root)[0]
    Image.new("RGB", tuple(first["img_size"])).save(outside)
    link = root / "images" / "escape.png"
    os.symlink(outside, link)
    return FILE, rewrite(root, _set("img_filename", "escape.png")), "img_filename"


def symlinked_folder_outside(root: Path) -> Problem:
    outside = root.parent / "elsewhere"
    outside.mkdir()
    first = records(root)[0]
    Image.new("RGB", tuple(first["img_size"])).save(outside / "shot.png")
    os.symlink(outside, root / "images" / "linked")
    return FILE, rewrite(root, _set("img_filename", "linked/shot.png")), "img_filename"


BAD_INPUTS = [
    malformed_json,
    not_a_list,
    missing_field,
    wrong_type_bbox,
    wrong_type_img_size,
    wrong_type_group,
    bbox_outside,
    bbox_inverted,
    bbox_y_inverted,
    unknown_ui_type,
    duplicate_id,
    missing_image,
    image_size_mismatch,
    not_an_image,
    dotdot_path,
    absolute_path,
    symlink_outside,
    symlinked_folder_outside,
]


def test_the_synthetic_release_is_valid(release: Path) -> None:
    loaded = load_release(release)
    assert len(loaded.samples) == 24
    assert loaded.exclusions == []


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__)
def test_strict_mode_raises_naming_file_id_and_field(release: Path, make_bad) -> None:
    file, sample_id, field = make_bad(release)
    with pytest.raises(InvalidSampleError) as caught:
        load_release(release, strict=True)
    error = caught.value
    assert (error.file, error.sample_id, error.field) == (file, sample_id, field)
    message = str(error)
    assert file in message
    if sample_id is not None:
        assert sample_id in message
    if field is not None:
        assert field in message


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__)
def test_lenient_mode_excludes_exactly_the_bad_samples(release: Path, make_bad) -> None:
    before = load_release(release).samples
    first = records(release)[0]
    renamed = records(release, "annotations/quartus_windows.json")[0]["id"]
    file, sample_id, field = make_bad(release)
    loaded = load_release(release, strict=False)
    matching = [
        e
        for e in loaded.exclusions
        if (e.source_file, e.sample_id, e.field) == (file, sample_id, field)
    ]
    assert len(matching) == 1, loaded.exclusions
    assert sample_id is None or sample_id not in {s.id for s in loaded.samples}
    if sample_id is None:  # the whole file is out, and says so
        assert "whole file is excluded" in matching[0].reason
        expected = {s.id for s in before if s.source_file == file}
    elif make_bad is duplicate_id:  # both copies are out
        expected = {sample_id, renamed}
        assert len(loaded.exclusions) == 2
    elif make_bad in (missing_image, image_size_mismatch, not_an_image):  # so is every sharer
        expected = {s.id for s in before if s.img_filename == first["img_filename"]}
    else:
        expected = {sample_id}
    assert {s.id for s in before} - {s.id for s in loaded.samples} == expected
    json.dumps([e.model_dump() for e in loaded.exclusions])  # run records can store them


@pytest.mark.parametrize(
    "make_bad",
    [missing_field, bbox_outside, symlink_outside, malformed_json],
    ids=lambda f: f.__name__,
)
def test_cli_strict_exits_non_zero_and_lenient_lists_the_exclusion(release: Path, make_bad) -> None:
    file, sample_id, field = make_bad(release)
    runner = CliRunner()
    strict = runner.invoke(app, ["data", "check", str(release), "--strict"])
    assert strict.exit_code == EXIT_DATA_ERROR
    assert file in strict.stderr and (sample_id or "whole file") in strict.stderr
    lenient = runner.invoke(app, ["data", "check", str(release), "--lenient"])
    assert lenient.exit_code == 0, lenient.output
    listing = lenient.stdout[lenient.stdout.index("Excluded samples") :]
    assert file in listing and (sample_id or "whole file") in listing
    if field is not None:
        assert field in listing


def test_strict_error_lists_every_problem(release: Path) -> None:
    missing_field(release)
    bbox_outside_id = rewrite(release, _set("bbox", [0, 0, 999, 5]), index=1)
    with pytest.raises(InvalidSampleError) as caught:
        load_release(release)
    assert len(caught.value.problems) == 2
    assert "and 1 more problem" in str(caught.value)
    assert caught.value.problems[1].sample_id == bbox_outside_id


def test_escaping_paths_raise_the_unsafe_path_type(release: Path) -> None:
    symlink_outside(release)
    with pytest.raises(UnsafePathError, match="outside the dataset folder"):
        load_release(release)


def test_symlink_inside_the_root_is_allowed(release: Path) -> None:
    first = records(release)[0]
    os.symlink(release / "images" / first["img_filename"], release / "images" / "alias.png")
    rewrite(release, _set("img_filename", "alias.png"))
    assert len(load_release(release).samples) == 24


def test_no_images_mode_still_checks_paths(release: Path) -> None:
    first = records(release)[0]
    (release / "images" / first["img_filename"]).unlink()
    assert len(load_release(release, check_images=False).samples) == 24
    dotdot_path(release)
    with pytest.raises(UnsafePathError):
        load_release(release, check_images=False)


def test_decompression_bomb_is_refused_with_a_clear_reason(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = {s.id for s in load_release(release).samples}
    assert len(every) == 24
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    loaded = load_release(release, strict=False)
    assert loaded.samples == []
    assert {e.sample_id for e in loaded.exclusions} == every  # each one refused, none dropped
    assert all("decompression bomb" in e.reason for e in loaded.exclusions)
    assert all(e.field == "img_filename" and e.sample_id for e in loaded.exclusions)


def test_official_schema_exactly_as_published(tmp_path: Path) -> None:
    """The field-notes sample verbatim, plus a file without group and instruction_cn."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images" / "vscode_mac").mkdir(parents=True)
    Image.new("RGB", (2560, 1664)).save(
        tmp_path / "images/vscode_mac/screenshot_2024-12-03_15-15-02.png", compress_level=1
    )
    official = {
        "id": "vscode_macos_0",
        "img_filename": "vscode_mac/screenshot_2024-12-03_15-15-02.png",
        "instruction": "Refresh the file explorer.",
        "instruction_cn": "刷新文件资源管理器。",
        "bbox": [473, 183, 503, 219],
        "img_size": [2560, 1664],
        "application": "vscode",
        "platform": "macos",
        "group": "Dev",
        "ui_type": "icon",
    }
    no_group = {k: v for k, v in official.items() if k not in ("group", "instruction_cn")}
    no_group |= {"id": "vscode_linux_0", "platform": "linux", "ui_type": "text"}
    (tmp_path / "annotations/vscode_macos.json").write_text(json.dumps([official]))
    (tmp_path / "annotations/vscode_linux.json").write_text(json.dumps([no_group]))
    loaded = load_release(tmp_path)
    by_id = {s.id: s for s in loaded.samples}
    assert by_id["vscode_macos_0"].bbox == (473, 183, 503, 219)
    assert by_id["vscode_macos_0"].img_size == (2560, 1664)
    assert by_id["vscode_macos_0"].source_file == "annotations/vscode_macos.json"
    assert by_id["vscode_linux_0"].group is None
    assert by_id["vscode_linux_0"].instruction_cn is None
    assert [s.id for s in loaded.samples] == ["vscode_linux_0", "vscode_macos_0"]  # file order

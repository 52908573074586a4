"""Every dataset layout the tool reads, declared as data in one place.

A layout says where a release keeps its annotations and screenshots, how its records map to
:class:`~screenspot_eval.data.sample.Sample` (which key holds what, the box format, where a
missing id, image size or platform comes from), which slices its results are reported by, and
the totals its publishers give, each with its source. Loading
(:mod:`screenspot_eval.data.validate`), synthesis, ``data check`` and the reports read these
declarations; none of them names a dataset in code.

Facts taken from published sources carry their source beside them. Where the release itself
could not be read here, the source says whose reading of it the number is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.accounting import OFFICIAL_GROUP_UI, OFFICIAL_TOTAL, OFFICIAL_UI_TOTALS
from screenspot_eval.data.paths import ANNOTATIONS_DIR, IMAGES_DIR
from screenspot_eval.data.sample import DEFAULT_LAYOUT
from screenspot_eval.errors import UserError

BoxFormat = Literal["xyxy", "xywh"]
BoxUnits = Literal["pixels", "normalised"]
UNCLASSIFIED = "unclassified"
"""The category of an item a release's classification file does not list (as the official
OSWorld-G evaluation names it)."""


class FieldMap(BaseModel):
    """Which key of a release record holds each :class:`Sample` field (None: the release has
    none; then the layout's fallback applies, see :class:`Layout`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = "id"
    image: str = "img_filename"
    instruction: str = "instruction"
    instruction_cn: str | None = None
    box: str = "bbox"
    size: str | None = "img_size"
    application: str | None = "application"
    platform: str | None = "platform"
    group: str | None = "group"
    ui_type: str | None = "ui_type"
    target_kind: str | None = None
    """The key naming each record's target kind (OSWorld-G ``box_type``); None: all boxes."""


class PublishedCount(BaseModel):
    """One count the publishers (or a reader of the release) give, and where it is from.

    ``slice`` is a slice column (``platform``), two joined by ``/`` (``platform/ui_type``) or
    ``total``; ``value`` is that slice's value (``mobile``, ``mobile/text``; ``all`` for the
    total).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slice: str
    value: str
    count: int
    source: str


class Layout(BaseModel):
    """One release layout (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    home: str
    """Where the official release is published."""
    annotations: tuple[str, ...]
    """Annotation files relative to the root, glob patterns allowed (each a JSON list)."""
    image_dir: str
    fields: FieldMap
    box_format: BoxFormat
    box_units: BoxUnits = "pixels"
    target_kinds: dict[str, str] = {}
    """Release spelling of a target kind -> ours (box / polygon / refusal); empty: all boxes."""
    platform_by_file: dict[str, str] = {}
    """Annotation file name -> platform, for releases that split files by platform."""
    group_from: Literal["group", "platform"] = "group"
    """``platform``: the release has no group; its top-level split (the platform) is the group."""
    categories_file: str | None = None
    """A file ``{"classified": {category: [{"id": ...}, ...]}}`` assigning capability groups."""
    categories: tuple[str, ...] = ()
    """The categories the release defines, in its order."""
    id_pattern: str = "{platform}_{index}"
    """How a sample without an id is named (``index``: its position in its file)."""
    hub_repo: str | None = None
    """The hub dataset that holds this layout as is (None: give a local folder)."""
    results_json: str
    """The per-run results JSON file name (the official format for ScreenSpot-Pro)."""
    leaderboard: str
    """The slice column the summary's headline table is by (``group`` x ui_type, or
    ``category``)."""
    report_slices: tuple[str, ...]
    """The slices of ``metrics.csv`` and the results JSON (``a/b``: a crossed with b)."""
    scoring: str
    """How a click is scored, and where that rule is from."""
    published: tuple[PublishedCount, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def has_refusal(self) -> bool:
        return "refusal" in self.target_kinds.values()


_SSPRO_SOURCE = "ScreenSpot-Pro paper (Li et al. 2025) and the release likaixin/ScreenSpot-Pro"
_SSV2_MOBILE_SOURCE = (
    "a third-party count of screenspot_mobile_v2.json (290 text / 211 icon; a thesis in the "
    "code index); SeeClick's 502 mobile is ScreenSpot v1"
)
_SSV2_TOTAL_SOURCE = (
    "FIELD-NOTES section 12 and the same thesis (ScreenSpot-v2, with OS-Atlas: 1272 "
    "instructions, as many as ScreenSpot v1)"
)
_SSV2_DESKTOP_SOURCE = (
    "SeeClick's ScreenSpot v1 count, repeated for v2 by FIELD-NOTES section 12; not counted "
    "from the v2 file here"
)
_SSV2_WEB_SOURCE = "1272 - 501 mobile - 334 desktop (not counted from the v2 file here)"
_OSWG_SOURCE = (
    "xlang-ai/OSWorld-G benchmark/OSWorld-G.json at commit daa6bd8e, as counted in the "
    "docstring of olmo_eval's OSWorld-G task (564 = 470 bbox + 40 polygon + 54 refusal, 264 "
    "screenshots); 54 refusal items also in Onifin/Holo3.1-OSWorld-G "
    "evaluation/holo_osworld_g.py"
)
_OSWG_SCORING = (
    "the official evaluation/eval.py GroundingEval._eval of xlang-ai/OSWorld-G, read in two "
    "verbatim copies (VLMEvalKit's OSWorldG dataset; Onifin/Holo3.1-OSWorld-G "
    "evaluation/holo_osworld_g.py imports it): bbox [x, y, w, h] -> x <= px <= x + w and "
    "y <= py <= y + h; polygon: even-odd ray casting on the flat [x1, y1, x2, y2, ...] outline "
    "(boundary points follow the ray-cast rule, not 'edges inclusive'); refusal: correct iff "
    "both coordinates of the click are negative (the official parsers turn a model's 'no such "
    "element' answer into [-1, -1, -1, -1]; an unparseable answer is a miss)"
)
_OSWG_CATEGORIES = (
    "text_matching",
    "element_recognition",
    "layout_understanding",
    "fine_grained_manipulation",
    "refusal",
)


def _osworld_g(name: str, title: str, annotation_file: str) -> Layout:
    return Layout(
        name=name,
        title=title,
        home="github.com/xlang-ai/OSWorld-G (benchmark/)",
        annotations=(annotation_file,),
        image_dir=IMAGES_DIR,
        fields=FieldMap(
            id="id",
            image="image_path",
            instruction="instruction",
            box="box_coordinates",
            size="image_size",
            application=None,
            platform=None,
            group=None,
            ui_type=None,
            target_kind="box_type",
        ),
        box_format="xywh",
        target_kinds={"bbox": "box", "polygon": "polygon", "refusal": "refusal"},
        categories_file="classification_result.json",
        categories=_OSWG_CATEGORIES,
        results_json="osworld_g_results.json",
        leaderboard="category",
        report_slices=("category", "target", "language"),
        scoring=_OSWG_SCORING,
        published=(
            PublishedCount(slice="total", value="all", count=564, source=_OSWG_SOURCE),
            PublishedCount(slice="target", value="box", count=470, source=_OSWG_SOURCE),
            PublishedCount(slice="target", value="polygon", count=40, source=_OSWG_SOURCE),
            PublishedCount(slice="target", value="refusal", count=54, source=_OSWG_SOURCE),
        ),
        notes=(
            "Categories come from classification_result.json (an item can be in several, "
            "one it does not list is 'unclassified'), as in the official evaluation; "
            "per-category totals are not recorded here (no published source was read).",
            "The hub copy MMInstruction/OSWorld-G is a different cut (no refusal items, "
            "polygons replaced by boxes; olmo_eval's reading): use the GitHub benchmark/ "
            "folder.",
            "A refusal item is answered correctly only by negative coordinates such as "
            "[-1, -1]; the prompt must say so. Accuracy is reported with and without the "
            "refusal items.",
        ),
    )


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="screenspot-pro",
            title="ScreenSpot-Pro",
            home="huggingface.co/datasets/likaixin/ScreenSpot-Pro",
            annotations=(f"{ANNOTATIONS_DIR}/*.json",),
            image_dir=IMAGES_DIR,
            fields=FieldMap(instruction_cn="instruction_cn"),
            box_format="xyxy",
            hub_repo="likaixin/ScreenSpot-Pro",
            results_json="screenspot_pro_results.json",
            leaderboard="group",
            report_slices=(
                "group",
                "ui_type",
                "group/ui_type",
                "application",
                "platform",
                "language",
            ),
            scoring=(
                "official eval_screenspot_pro.py (likaixin2000/ScreenSpot-Pro-GUI-Grounding): "
                "x1 <= x <= x2 and y1 <= y <= y2, edges included"
            ),
            published=(
                PublishedCount(
                    slice="total", value="all", count=OFFICIAL_TOTAL, source=_SSPRO_SOURCE
                ),
                *(
                    PublishedCount(slice="ui_type", value=ui, count=n, source=_SSPRO_SOURCE)
                    for ui, n in OFFICIAL_UI_TOTALS.items()
                ),
                *(
                    PublishedCount(
                        slice="group/ui_type", value=f"{g}/{ui}", count=n, source=_SSPRO_SOURCE
                    )
                    for g, cells in OFFICIAL_GROUP_UI.items()
                    for ui, n in cells.items()
                ),
            ),
        ),
        Layout(
            name="screenspot-v2",
            title="ScreenSpot-v2",
            home="huggingface.co/datasets/OS-Copilot/ScreenSpot-v2 (images in screenspotv2_image.zip)",
            annotations=(
                "screenspot_desktop_v2.json",
                "screenspot_mobile_v2.json",
                "screenspot_web_v2.json",
            ),
            image_dir="screenspotv2_image",
            fields=FieldMap(
                id=None,
                image="img_filename",
                instruction="instruction",
                box="bbox",
                size=None,
                application="data_source",
                platform=None,
                group=None,
                ui_type="data_type",
            ),
            # [x, y, w, h] in pixels: the release's files; rootsautomation/ScreenSpot's card
            # says the same of ScreenSpot v1, whose format v2 keeps.
            box_format="xywh",
            platform_by_file={
                "screenspot_desktop_v2.json": "desktop",
                "screenspot_mobile_v2.json": "mobile",
                "screenspot_web_v2.json": "web",
            },
            group_from="platform",
            results_json="screenspot_v2_results.json",
            leaderboard="group",
            report_slices=("platform", "ui_type", "platform/ui_type", "application", "language"),
            scoring=(
                "SeeClick / OS-Atlas ScreenSpot evaluation: [x, y, w, h] -> x <= px <= x + w and "
                "y <= py <= y + h, edges included"
            ),
            published=(
                PublishedCount(slice="total", value="all", count=1272, source=_SSV2_TOTAL_SOURCE),
                PublishedCount(
                    slice="platform", value="mobile", count=501, source=_SSV2_MOBILE_SOURCE
                ),
                PublishedCount(
                    slice="platform/ui_type",
                    value="mobile/text",
                    count=290,
                    source=_SSV2_MOBILE_SOURCE,
                ),
                PublishedCount(
                    slice="platform/ui_type",
                    value="mobile/icon",
                    count=211,
                    source=_SSV2_MOBILE_SOURCE,
                ),
                PublishedCount(
                    slice="platform",
                    value="desktop",
                    count=334,
                    source=_SSV2_DESKTOP_SOURCE,
                ),
                PublishedCount(slice="platform", value="web", count=437, source=_SSV2_WEB_SOURCE),
            ),
            notes=(
                "The per-platform counts were not read from the release here (no copy could be "
                "fetched): mobile 501 is a third-party count of the v2 file, web 437 follows "
                "from the total. The SeeClick paper's 502 / 334 / 436 describe ScreenSpot v1.",
                "Records have no id and no image size: ids are <platform>_<index in file>, "
                "sizes come from the PNG headers.",
            ),
        ),
        _osworld_g("osworld-g", "OSWorld-G", "OSWorld-G.json"),
        _osworld_g(
            "osworld-g-refined", "OSWorld-G (refined instructions)", "OSWorld-G_refined.json"
        ),
    )
}
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)


class UnknownLayoutError(UserError):
    """A layout name that is not declared here (a bad option, exit 2; deliberately no
    ``ValueError``, so a config model that validates the name lets this one-line message
    through unchanged)."""


def get_layout(name: str | Layout | None = None) -> Layout:
    """The declared layout ``name`` (default ScreenSpot-Pro); an unknown name is a one-line
    error listing the known ones."""
    if isinstance(name, Layout):
        return name
    key = DEFAULT_LAYOUT if name is None else str(name).strip().lower()
    try:
        return LAYOUTS[key]
    except KeyError:
        raise UnknownLayoutError(
            f"unknown dataset layout {name!r}; known layouts: {', '.join(LAYOUT_NAMES)}"
        ) from None


def published_count(layout: Layout, slice_name: str, value: str) -> PublishedCount | None:
    """The published count of one slice value, if the layout records one."""
    for entry in layout.published:
        if entry.slice == slice_name and entry.value == value:
            return entry
    return None


MISSING = "(missing)"


def slice_values(item: Any, column: str) -> list[str]:
    """The values of slice ``column`` for one sample or record (an object or a mapping).

    ``category`` gives every category of the item (``unclassified`` when none: an item counts
    in each of its categories, as in the official OSWorld-G evaluation); ``a/b`` gives the
    crossed values ``x/y``; a missing value is ``(missing)``, never dropped."""
    if "/" in column:
        first, second = column.split("/", 1)
        return [f"{a}/{b}" for a in slice_values(item, first) for b in slice_values(item, second)]

    def get(name: str) -> Any:
        return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)

    if column == "category":
        categories = get("categories")
        return (
            [str(c) for c in categories]
            if categories is not None and len(categories)
            else [UNCLASSIFIED]
        )
    value = get(column)
    if column == "target" and value is None:
        return ["box"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return [MISSING]
    return [str(value)]

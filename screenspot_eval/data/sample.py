"""The one typed sample model shared by every stage of the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.paths import IMAGES_DIR

UiType = Literal["text", "icon"]
UI_TYPES: tuple[str, ...] = ("text", "icon")
TargetKind = Literal["box", "polygon", "refusal"]
"""What a correct click must hit: a box, a polygon, or nothing (a refusal item: the instruction
names nothing on the screenshot, see :mod:`screenspot_eval.protocol.scoring`)."""
TARGET_KINDS: tuple[str, ...] = ("box", "polygon", "refusal")
DEFAULT_LAYOUT = "screenspot-pro"


class Sample(BaseModel):
    """One grounding instruction with its ground truth, in any layout of
    :mod:`screenspot_eval.data.layouts` (ScreenSpot-Pro by default).

    Field names follow the official ScreenSpot-Pro annotation files. ``bbox`` is
    ``(x1, y1, x2, y2)`` in pixels of the original screenshot, whose size is
    ``img_size = (width, height)``; for a polygon target it is the polygon's bounding box, and a
    refusal target has none. ``polygon`` is the flat ``(x1, y1, x2, y2, ...)`` outline of a
    polygon target, in pixels. ``source_file`` is the annotation file (relative to the dataset
    root) the sample came from, so every error and every record can point back at it;
    ``image_dir`` is the folder (relative to the root) ``img_filename`` is relative to.
    ``categories`` are the capability groups a release assigns (OSWorld-G: several per item).
    A slice field the layout does not have (OSWorld-G has no application, platform or ui_type)
    is None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    img_filename: str
    instruction: str
    instruction_cn: str | None = None
    bbox: tuple[float, float, float, float] | None
    img_size: tuple[int, int]
    application: str | None
    platform: str | None
    group: str | None = None
    ui_type: UiType | None
    source_file: str
    layout: str = DEFAULT_LAYOUT
    image_dir: str = IMAGES_DIR
    target: TargetKind = "box"
    polygon: tuple[float, ...] | None = None
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return self.img_size[0]

    @property
    def height(self) -> int:
        return self.img_size[1]

    @property
    def image_path(self) -> str:
        """The screenshot's path relative to the dataset root (``images/<img_filename>``)."""
        return f"{self.image_dir}/{self.img_filename}"

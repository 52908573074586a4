"""The one typed sample model shared by every stage of the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

UiType = Literal["text", "icon"]
UI_TYPES: tuple[str, ...] = ("text", "icon")


class Sample(BaseModel):
    """One ScreenSpot-Pro instruction with its ground-truth box.

    Field names follow the official annotation files. ``bbox`` is ``(x1, y1, x2, y2)`` in pixels
    of the original screenshot, whose size is ``img_size = (width, height)``. ``source_file`` is
    the annotation file (relative to the dataset root) the sample came from, so every error and
    every record can point back at it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    img_filename: str
    instruction: str
    instruction_cn: str | None = None
    bbox: tuple[float, float, float, float]
    img_size: tuple[int, int]
    application: str
    platform: str
    group: str | None = None
    ui_type: UiType
    source_file: str

    @property
    def width(self) -> int:
        return self.img_size[0]

    @property
    def height(self) -> int:
        return self.img_size[1]

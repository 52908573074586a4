"""Prompt templates as data: TOML files, a frozen model with a content hash, chat rendering.

A grounding number means nothing without the exact prompt that produced it, so templates are
files (``screenspot_eval/protocol/templates/*.toml``, shipped as package data), every run stores the template's content hash, and the
template names the coordinate convention its answers are in: the parser takes it from there,
never from the numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from screenspot_eval.errors import UserError
from screenspot_eval.protocol.coords import CoordinateConvention

PROMPTS_DIR: Traversable = resources.files("screenspot_eval.protocol").joinpath("templates")
"""The built-in templates: package data, found the same way from a wheel or a source tree."""
DEFAULT_TEMPLATE_NAME = "gemma4-box2d"
INSTRUCTION_PLACEHOLDER = "{instruction}"
IMAGE_PLACEHOLDER: dict[str, str] = {"type": "image"}
"""The image item of a rendered user message; backends replace it with the real image."""


class PromptTemplateError(UserError, ValueError):
    """A template that cannot be found or is invalid."""


class PromptTemplate(BaseModel):
    """One grounding prompt and everything needed to read its answers.

    ``answer_format`` describes what the prompt asks for (e.g. ``box_2d_json``);
    ``convention`` is how the numbers of such an answer map to the image;
    ``structured_regex`` (optional) constrains decoding to exactly that format.
    ``source`` is where the template was loaded from and is not part of the hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    version: int
    description: str
    system: str | None = None
    user: str
    image_position: Literal["before", "after"] = "before"
    answer_format: str
    convention: CoordinateConvention
    structured_regex: str | None = None
    chat_template_kwargs: dict[str, bool | int | float | str] = Field(
        default_factory=lambda: {"enable_thinking": False}
    )
    source: str | None = Field(default=None, exclude=True)

    @field_validator("user")
    @classmethod
    def _one_instruction_placeholder(cls, user: str) -> str:
        if user.count(INSTRUCTION_PLACEHOLDER) != 1:
            raise ValueError(f"user text must contain {INSTRUCTION_PLACEHOLDER} exactly once")
        return user

    @field_validator("structured_regex")
    @classmethod
    def _regex_compiles(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"structured_regex does not compile: {exc}") from exc
        return regex

    @property
    def content_hash(self) -> str:
        """Short sha256 of the canonical JSON of every field but ``source``."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def to_record(self) -> dict[str, Any]:
        """What a run record stores: all fields, the hash and the source path."""
        return {
            **self.model_dump(mode="json"),
            "content_hash": self.content_hash,
            "source": self.source,
        }


def list_templates(prompts_dir: Traversable | None = None) -> list[str]:
    """Names of the templates shipped in ``prompts_dir`` (file stems, sorted)."""
    directory = prompts_dir or PROMPTS_DIR
    return sorted(
        p.name.removesuffix(".toml") for p in directory.iterdir() if p.name.endswith(".toml")
    )


def _looks_like_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text


def load_template(
    name_or_path: str | Path = DEFAULT_TEMPLATE_NAME, prompts_dir: Traversable | None = None
) -> PromptTemplate:
    """Load a template by name (a built-in one, see :data:`PROMPTS_DIR`) or by file path.

    A lookup by name also checks that the file's ``name`` field matches, so a copied file that
    was not renamed inside cannot masquerade as another template.
    """
    directory = prompts_dir or PROMPTS_DIR
    by_path = _looks_like_path(name_or_path)
    path: Traversable = Path(name_or_path) if by_path else directory / f"{name_or_path}.toml"
    if not path.is_file():
        available = ", ".join(list_templates(directory)) or "none"
        raise PromptTemplateError(
            f"prompt template {str(name_or_path)!r} not found (looked at {path}; "
            f"available in {directory}: {available})"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        template = PromptTemplate(**data, source=str(path))
    except (tomllib.TOMLDecodeError, ValidationError, TypeError) as exc:
        raise PromptTemplateError(f"invalid prompt template {path}: {exc}") from exc
    if not by_path and template.name != str(name_or_path):
        raise PromptTemplateError(
            f"{path} declares name {template.name!r}, expected {str(name_or_path)!r}"
        )
    return template


def render_messages(template: PromptTemplate, instruction: str) -> list[dict[str, Any]]:
    """OpenAI-style chat messages with one image placeholder item, in the template's order.

    ``str.replace`` rather than ``str.format``: templates contain literal JSON braces.
    """
    text_item = {
        "type": "text",
        "text": template.user.replace(INSTRUCTION_PLACEHOLDER, instruction),
    }
    image_item = dict(IMAGE_PLACEHOLDER)
    content = (
        [image_item, text_item] if template.image_position == "before" else [text_item, image_item]
    )
    messages: list[dict[str, Any]] = []
    if template.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": template.system}]})
    messages.append({"role": "user", "content": content})
    return messages

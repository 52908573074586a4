"""Prompt templates: loading, hashing, rendering, and their structured-decoding regexes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import AnswerFormat, ParsedClick, parse_click
from screenspot_eval.protocol.prompts import (
    DEFAULT_TEMPLATE_NAME,
    IMAGE_PLACEHOLDER,
    PromptTemplate,
    PromptTemplateError,
    list_templates,
    load_template,
    render_messages,
)

SHIPPED = {
    "gemma4-box2d": (CoordinateConvention.YX_1000, AnswerFormat.BOX_2D),
    "gemma4-point2d": (CoordinateConvention.YX_1000, AnswerFormat.POINT_2D),
    "point-xy-1000": (CoordinateConvention.XY_1000, AnswerFormat.NAMED_POINT),
}


def test_shipped_templates_load_with_their_conventions() -> None:
    assert set(SHIPPED) <= set(list_templates())
    assert load_template().name == DEFAULT_TEMPLATE_NAME == "gemma4-box2d"
    for name, (convention, _) in SHIPPED.items():
        template = load_template(name)
        assert template.name == name
        assert template.convention is convention
        assert template.chat_template_kwargs == {"enable_thinking": False}
        assert template.structured_regex is not None
        assert re.fullmatch(r"[0-9a-f]{12}", template.content_hash)


def test_hash_is_stable_and_covers_content_not_source(tmp_path: Path) -> None:
    template = load_template(DEFAULT_TEMPLATE_NAME)
    assert load_template(DEFAULT_TEMPLATE_NAME).content_hash == template.content_hash
    copy = tmp_path / "copy.toml"
    copy.write_bytes(Path(template.source or "").read_bytes())
    from_copy = load_template(copy)
    assert from_copy.source == str(copy)
    assert from_copy.content_hash == template.content_hash
    changed = template.model_copy(update={"user": template.user + " "})
    assert changed.content_hash != template.content_hash
    thinking = template.model_copy(update={"chat_template_kwargs": {"enable_thinking": True}})
    assert thinking.content_hash != template.content_hash
    record = template.to_record()
    assert record["content_hash"] == template.content_hash
    assert record["convention"] == "yx-1000"
    assert record["chat_template_kwargs"] == {"enable_thinking": False}


def test_render_messages_places_the_image_and_the_instruction() -> None:
    template = load_template("gemma4-box2d")
    messages = render_messages(template, "Open {the} settings")
    assert [m["role"] for m in messages] == ["user"]
    image, text = messages[0]["content"]
    assert image == IMAGE_PLACEHOLDER
    assert text["type"] == "text" and "Open {the} settings" in text["text"]
    assert "{instruction}" not in text["text"] and '"box_2d"' in text["text"]
    after = template.model_copy(update={"image_position": "after", "system": "Be brief."})
    system, user = render_messages(after, "x")
    assert system == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert user["content"][1] == IMAGE_PLACEHOLDER
    render_messages(template, "y")[0]["content"][0]["image"] = "mutated"
    assert render_messages(template, "y")[0]["content"][0] == IMAGE_PLACEHOLDER


def test_user_templates_by_path_and_errors(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(
        'name = "mine"\nversion = 2\ndescription = "d"\nuser = "Click {instruction}"\n'
        'answer_format = "bare_point"\nconvention = "xy-1"\nimage_position = "after"\n'
    )
    template = load_template(str(mine))
    assert template.convention is CoordinateConvention.XY_1
    assert template.chat_template_kwargs == {"enable_thinking": False}
    assert load_template("mine", prompts_dir=tmp_path) == template
    with pytest.raises(PromptTemplateError, match="available"):
        load_template("no-such-template")
    bad = tmp_path / "bad.toml"
    bad.write_text(mine.read_text().replace("{instruction}", "it"))
    with pytest.raises(PromptTemplateError, match="exactly once"):
        load_template(bad)
    renamed = tmp_path / "other.toml"
    renamed.write_text(mine.read_text())
    with pytest.raises(PromptTemplateError, match="declares name"):
        load_template("other", prompts_dir=tmp_path)
    with pytest.raises(PromptTemplateError):
        load_template(mine.with_name("typo.toml"))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(mine.read_text().replace('"xy-1"', '"pixels"'))
    with pytest.raises(PromptTemplateError):
        load_template(unknown)


def test_frozen() -> None:
    template = load_template()
    with pytest.raises(Exception, match="frozen"):
        template.name = "other"  # type: ignore[misc]
    assert isinstance(template, PromptTemplate)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_structured_regex_accepts_a_typical_answer(name: str) -> None:
    template = load_template(name)
    typical = {
        "gemma4-box2d": '[{"box_2d": [0, 12, 999, 1000], "label": "Save button"}]',
        "gemma4-point2d": '{"point_2d": [500, 7]}',
        "point-xy-1000": '{"point": [1000, 0]}',
    }[name]
    assert re.fullmatch(template.structured_regex or "", typical)
    assert not re.fullmatch(template.structured_regex or "", typical.replace("0", "1001", 1))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(SHIPPED)), st.data())
def test_every_regex_conformant_answer_parses(name: str, data: st.DataObject) -> None:
    """What constrained decoding can emit is always read, in the template's own format."""
    template = load_template(name)
    text = data.draw(st.from_regex(template.structured_regex or "", fullmatch=True))
    convention, answer_format = SHIPPED[name]
    result = parse_click(text, template.convention, (2560, 1440))
    assert isinstance(result, ParsedClick), (text, result)
    assert result.answer_format is answer_format
    assert result.convention is convention
    assert all(0 <= v <= 1000 for v in result.values)
    assert not result.out_of_image

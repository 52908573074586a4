"""The model seam: adapters chosen from the checkpoint, presets as data, refusals before any
engine starts, and the family's own resize for pixel answers (pure; no vLLM)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from screenspot_eval.adapters.base import AdapterError
from screenspot_eval.adapters.presets import load_preset, preset_names
from screenspot_eval.adapters.qwen_vl import QWEN2_5_VL, QWEN3_VL, qwen_sent_size
from screenspot_eval.adapters.registry import ADAPTERS, detect_adapter, read_architectures
from screenspot_eval.cli.app import app
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import ParsedClick, parse_click
from screenspot_eval.protocol.prompts import load_template
from screenspot_eval.run.family import check_engine_family
from screenspot_eval.run.grading import convention_warning

ARCHITECTURES = {
    "gemma4": "Gemma4ForConditionalGeneration",
    "qwen2-vl": "Qwen2VLForConditionalGeneration",
    "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3-vl": "Qwen3VLForConditionalGeneration",
}


def checkpoint(tmp_path: Path, architecture: str, processor: dict | None = None) -> Path:
    folder = tmp_path / architecture
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    if processor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"SCREENSPOT_API_KEY": None, "COLUMNS": "200"})


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_adapter_is_read_from_the_checkpoints_architecture(tmp_path, name):
    folder = checkpoint(tmp_path, ARCHITECTURES[name])
    assert read_architectures(str(folder)) == (ARCHITECTURES[name],)
    assert detect_adapter(read_architectures(str(folder)), "it").name == name
    result = invoke("run", "--model", str(folder), "--out", "x", "--print-config")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["config"]["engine"]["adapter"] == name
    assert shown["prompt"]["name"] == ADAPTERS[name].default_template


def test_an_unknown_architecture_is_refused_naming_the_option():
    with pytest.raises(AdapterError, match="--adapter"):
        detect_adapter(("LlavaForConditionalGeneration",), "the checkpoint m")


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl", "qwen2-vl"])
@pytest.mark.parametrize("variant", ["pre", "post"])
def test_a_norm_variant_on_a_model_without_one_is_refused_in_one_line(tmp_path, family, variant):
    folder = checkpoint(tmp_path, ARCHITECTURES[family])
    out = tmp_path / "out"
    result = invoke("run", "--model", str(folder), "--norm", variant, "--out", str(out))
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--norm {variant}" in lines[0] and family in lines[0], lines
    assert "Traceback" not in result.output
    assert not out.exists()  # refused before the folder, the data or any engine


def test_a_qwen_budget_is_not_gemmas_soft_tokens(tmp_path):
    folder = checkpoint(tmp_path, ARCHITECTURES["qwen2.5-vl"])
    result = invoke("run", "--model", str(folder), "--max-soft-tokens", "280", "--out", "x")
    assert result.exit_code != 0 and "max_pixels" in result.output


def test_the_budget_is_read_from_the_checkpoint_in_either_spelling(tmp_path):
    old = checkpoint(tmp_path, "A", {"min_pixels": 1000, "max_pixels": 50000})
    new = checkpoint(tmp_path, "B", {"size": {"shortest_edge": 1000, "longest_edge": 50000}})
    for folder in (old, new):
        budget = QWEN2_5_VL.image_budget(None, {}, folder)
        assert (budget.value, dict(budget.processor)) == (
            50000,
            {"min_pixels": 1000, "max_pixels": 50000},
        )
    given = QWEN2_5_VL.image_budget(None, {"max_pixels": 20000}, old)
    assert dict(given.processor) == {"min_pixels": 1000, "max_pixels": 20000}
    default = QWEN3_VL.image_budget(None, {}, None)
    assert dict(default.processor) == {"min_pixels": 65536, "max_pixels": 16777216}


def test_qwen_resize_known_values():
    """Worked by hand from smart_resize: 1920x1080 rounds up to 1932x1092 (28 | both) at the
    default budget; 6016x3384 is scaled to fit 12845056 pixels."""
    assert qwen_sent_size(1920, 1080, min_pixels=3136, max_pixels=12845056, factor=28) == (
        1932,
        1092,
    )
    w, h = qwen_sent_size(6016, 3384, min_pixels=3136, max_pixels=12845056, factor=28)
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 12845056
    w, h = qwen_sent_size(30, 30, min_pixels=65536, max_pixels=16777216, factor=32)
    assert w * h >= 65536 and w % 32 == 0
    with pytest.raises(ValueError, match="aspect ratio"):
        qwen_sent_size(10000, 20, min_pixels=3136, max_pixels=12845056, factor=28)


def test_a_pixel_answer_maps_back_through_the_familys_resize():
    budget = QWEN2_5_VL.image_budget(None, {"max_pixels": 1_000_000}, None)
    sent = QWEN2_5_VL.sent_size(1920, 1080, budget)
    assert sent != (1920, 1080)
    parsed = parse_click(
        f'[{{"point_2d": [{sent[0] // 2}, {sent[1] // 2}]}}]',
        CoordinateConvention.XY_PIXELS_SENT,
        (1920, 1080),
        sent_size=sent,
    )
    assert isinstance(parsed, ParsedClick)
    assert parsed.x == pytest.approx((sent[0] // 2) * 1920 / sent[0])
    assert parsed.y == pytest.approx((sent[1] // 2) * 1080 / sent[1])


def test_qwen2_vl_box_tokens_are_one_box_not_two_points():
    parsed = parse_click(
        "<|box_start|>(100,200),(300,400)<|box_end|>", CoordinateConvention.XY_1000, (1000, 500)
    )
    assert isinstance(parsed, ParsedClick)
    assert (parsed.x, parsed.y) == (200.0, 150.0)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_names_a_known_adapter_and_template_and_a_source(name):
    if name == "gui-actor-7b":
        with pytest.raises(AdapterError, match="cannot run here"):
            load_preset(name)
        return
    preset = load_preset(name)
    assert preset.adapter in ADAPTERS and preset.source
    load_template(preset.template)


def test_a_preset_sets_the_adapter_prompt_and_budget_and_the_command_line_wins():
    result = invoke("run", "--preset", "ui-tars-1.5-7b", "--out", "x", "--print-config")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    engine = shown["config"]["engine"]
    assert engine["model"] == "ByteDance-Seed/UI-TARS-1.5-7B" and engine["adapter"] == "qwen2.5-vl"
    assert engine["mm_processor_kwargs"] == {"min_pixels": 78400, "max_pixels": 12845056}
    assert shown["prompt"]["name"] == "ui-tars-point-pixels"
    assert shown["llm_kwargs"]["mm_processor_kwargs"]["min_pixels"] == 78400
    mine = invoke(
        "run",
        "--preset",
        "ui-tars-1.5-7b",
        "--prompt",
        "qwen2.5-vl-point",
        "--out",
        "x",
        "--print-config",
    )
    assert json.loads(mine.stdout)["prompt"]["name"] == "qwen2.5-vl-point"
    refused = invoke("run", "--preset", "gui-actor-7b", "--out", "x")
    assert refused.exit_code != 0 and "pointer head" in refused.output


def test_an_engine_of_another_family_is_refused_before_any_sample():
    with pytest.raises(AdapterError, match=r"--adapter qwen2\.5-vl"):
        check_engine_family(
            "gemma4", "vllm.model_executor.models.Qwen2_5_VLForConditionalGeneration"
        )
    check_engine_family("gemma4", "Gemma4WithSelectableEmbedder")  # our class, same family
    with pytest.raises(AdapterError, match="--adapter gemma4"):
        check_engine_family("qwen3-vl", "screenspot_eval.x.Gemma4UnifiedWithSelectableEmbedder")
    check_engine_family("gemma4", "unknown (server without the screenspot embedder route)")


class _Models(BaseHTTPRequestHandler):
    root = "some/unknown-model"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            body = {"data": [{"id": "served", "root": self.root}]}
            data = json.dumps(body).encode()
            self.send_response(200)
        else:
            data = b'{"detail": "Not Found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def models_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_whose_family_cannot_be_read_is_refused_unless_named(models_server, tmp_path):
    out = tmp_path / "out"
    refused = invoke("run", "--endpoint", models_server, "--out", str(out), "--print-config")
    assert refused.exit_code != 0
    assert "cannot tell which model family" in refused.output and "--adapter" in refused.output
    named = invoke(
        "run",
        "--endpoint",
        models_server,
        "--adapter",
        "qwen3-vl",
        "--out",
        str(out),
        "--print-config",
    )
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["config"]["engine"]["adapter"] == "qwen3-vl"


def test_a_server_root_names_the_family(models_server, tmp_path, monkeypatch):
    folder = checkpoint(tmp_path, ARCHITECTURES["qwen2.5-vl"])
    monkeypatch.setattr(_Models, "root", str(folder))
    shown = invoke("run", "--endpoint", models_server, "--out", "x", "--print-config")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["config"]["engine"]["adapter"] == "qwen2.5-vl"


def _record(out_of_image: bool | None) -> Any:
    class R:
        convention = "xy-1000"

    r = R()
    r.out_of_image = out_of_image  # type: ignore[attr-defined]
    return r


def test_most_clicks_outside_the_image_warn_about_the_convention():
    assert convention_warning([_record(True)] * 6 + [_record(False)] * 2) is not None
    assert convention_warning([_record(True)] * 3 + [_record(False)] * 5) is None
    assert convention_warning([_record(True)] * 4 + [_record(None)] * 10) is None  # too few


def test_verify_embedder_on_a_family_without_variants_is_refused_before_any_engine(tmp_path):
    folder = checkpoint(tmp_path, ARCHITECTURES["qwen3-vl"])
    refused = invoke("verify-embedder", "--model", str(folder))
    assert (
        refused.exit_code != 0 and "--norm pre" in refused.output and "qwen3-vl" in refused.output
    )
    native = invoke("verify-embedder", "--model", str(folder), "--norm", "native", "--print-config")
    assert native.exit_code == 0, native.output

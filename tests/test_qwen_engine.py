"""A tiny random Qwen2.5-VL twin through the real vLLM engine, in-process and behind `serve`, on
synthetic ScreenSpot-v2 and OSWorld-G data: the model seam end to end.

Pixel answers are checked against an independent resize: transformers' own
``Qwen2VLImageProcessor`` run on an image of each screenshot's size (tests/test_qwen_resize.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import ENGINE_ARGS, popen_cli, run_cli
from test_qwen_resize import transformers_sent_size
from test_server_engine import free_port, stop_server

from screenspot_eval.backends.http.server import wait_until_healthy

pytestmark = pytest.mark.engine
DECODING = ["--structured", "--max-tokens", "48", "--quiet"]
PATCH = 14  # Qwen2.5-VL


def synth(root: Path, layout: str, n: int) -> Path:
    done = run_cli(
        [
            "data",
            "synth",
            str(root),
            "--layout",
            layout,
            "--n",
            str(n),
            "--max-width",
            "640",
            "--seed",
            "3",
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def v2_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("v2"), "screenspot-v2", 9)


@pytest.fixture(scope="module")
def osworld_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("osworld"), "osworld-g", 9)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_in_process_run_maps_pixel_clicks_back_through_qwens_resize(
    tiny_qwen_model, v2_data, tmp_path
):
    out = tmp_path / "run"
    done = run_cli(
        [
            "run",
            "--model",
            str(tiny_qwen_model),
            "--data",
            str(v2_data),
            "--layout",
            "screenspot-v2",
            "--out",
            str(out),
            *ENGINE_ARGS,
            *DECODING,
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"]["adapter"] == "qwen2.5-vl"  # read from the checkpoint
    assert manifest["convention"] == "xy-pixels-sent"
    processor = manifest["model_family"]["processor"]
    rows = records(out)
    assert len(rows) == 9 and all(r["parse_status"] == "parsed" for r in rows)
    for row in rows:
        width, height = row["img_size"]
        sent_w, sent_h = transformers_sent_size(
            width, height, processor["min_pixels"], processor["max_pixels"], PATCH
        )
        x, y = (float(v) for v in re.findall(r"\d+", row["raw_response"])[1:3])
        assert row["pred_x"] == pytest.approx(x * width / sent_w)
        assert row["pred_y"] == pytest.approx(y * height / sent_h)
        assert row["image_soft_tokens"] == (sent_w // 28) * (sent_h // 28)


@pytest.fixture(scope="module")
def qwen_server(tiny_qwen_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("qwen-server") / "server.log"
    proc = popen_cli(
        [
            "serve",
            "--model",
            str(tiny_qwen_model),
            "--port",
            str(port),
            *ENGINE_ARGS,
            "--log",
            str(log),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, timeout_s=300)
    except Exception:
        stop_server(proc)
        raise AssertionError(f"qwen server did not start: {log.read_text()[-3000:]}") from None
    yield url
    stop_server(proc)


def test_against_serve_the_family_is_read_from_the_server_and_osworld_g_scores(
    qwen_server, osworld_data, tmp_path
):
    out = tmp_path / "served"
    done = run_cli(
        [
            "run",
            "--endpoint",
            qwen_server,
            "--data",
            str(osworld_data),
            "--layout",
            "osworld-g",
            "--out",
            str(out),
            *DECODING,
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"]["adapter"] == "qwen2.5-vl"
    assert manifest["engine_report"]["model_class"].endswith("Qwen2_5_VLForConditionalGeneration")
    rows = records(out)
    assert len(rows) == 9 and {r["outcome"] for r in rows} <= {"correct", "wrong", "wrong_format"}


def test_norm_pre_on_the_qwen_twin_is_refused_before_any_engine(tiny_qwen_model, tmp_path):
    out = tmp_path / "refused"
    done = run_cli(["run", "--model", str(tiny_qwen_model), "--norm", "pre", "--out", str(out)])
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "--norm pre" in done.stderr
    assert not out.exists()


def test_a_dtype_ab_on_the_qwen_twin_is_proven_inside_both_engines(
    tiny_qwen_model, v2_data, tmp_path
):
    """Any engine factor on any family: dtype, read back from the loaded weights of each side."""
    out = tmp_path / "ab"
    args = [
        "compare",
        "--model",
        str(tiny_qwen_model),
        "--a",
        "native",
        "--b",
        "native",
        "--b-set",
        "dtype=bfloat16",
        "--data",
        str(v2_data),
        "--layout",
        "screenspot-v2",
        "--limit",
        "4",
        "--out",
        str(out),
        *ENGINE_ARGS,
        *DECODING,
    ]
    done = run_cli(args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'factor dtype "float32" -> "bfloat16"' in done.stdout
    sides = [json.loads(p.read_text()) for p in sorted(out.rglob("manifest.json"))]
    readings = [m["side"] for m in sides if m.get("side")]
    assert len(readings) == 2
    assert {m["model_family"]["adapter"] for m in sides} == {"qwen2.5-vl"}
    dumped = json.dumps(readings)
    assert "bfloat16" in dumped and "float32" in dumped

"""Multi-step protocols through ``execute_run`` with a scripted backend: step records, the final
click mapped back exactly, batching by step, resume inside a step, costs, failures.

The script answers a point at a fixed fraction of whatever image it is sent (a crop or the
whole screenshot), so every crop and click can be recomputed here independently."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from zoom_reference import reground_view

from screenspot_eval.backends.base import GroundingRequest
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.run.config import resolve_config
from screenspot_eval.run.session import RunAbortedError, RunRefusedError, execute_run

N = 10


def fraction(sample_id: str) -> tuple[float, float]:
    """A fixed point of the image each sample's answers name (a stable hash of its id)."""
    h = zlib.crc32(sample_id.encode())
    return (0.05 + 0.9 * (h % 1000) / 1000, 0.05 + 0.9 * (h // 1000 % 1000) / 1000)


def answer(request: GroundingRequest) -> str:
    """``yx-1000`` point box at the sample's fraction of the image it was sent."""
    fx, fy = fraction(request.sample_id)
    y, x = round(fy * 1000), round(fx * 1000)
    return json.dumps([{"box_2d": [y, x, y, x], "label": "target"}])


class Script(ScriptedBackend):
    """Records each request's image size, per pass."""

    def __init__(self, **kwargs: Any):
        super().__init__(answer, **kwargs)
        self.passes: list[list[tuple[str, tuple[int, int]]]] = []

    def generate(self, requests, sampling):
        self.passes.append([])

        def seen():
            for request in requests:
                self.passes[-1].append((request.sample_id, tuple(request.image.size)))
                yield request

        yield from super().generate(seen(), sampling)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    synthesize_release(root, N, seed=3, max_width=2400)
    return root


def config_for(data_root: Path, protocol: str, **more: Any):
    given = {
        "engine.model": "fake/model",
        "engine.adapter": "gemma4",
        "engine.max_soft_tokens": 70,
        "data.source": str(data_root),
        "prompt.protocol": protocol,
        "runtime.image_workers": 1,
        "runtime.prefetch": 2,
        **more,
    }
    return resolve_config(None, given)


def run(config, out: Path, backend: ScriptedBackend):
    return execute_run(config, out, quiet=True, backend_factory=lambda _c: backend)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_reground_records_every_step_and_maps_the_final_click_back(tmp_path, data_root):
    out = tmp_path / "reground"
    backend = Script()
    result = run(config_for(data_root, "reground"), out, backend)
    samples = {s.id: s for s in load_release(data_root).samples}
    steps = read_jsonl(out / "steps.jsonl")
    assert len(backend.passes) == 2  # one streaming pass per step, never one per sample
    assert [len(p) for p in backend.passes] == [N, N]
    assert min(min(s.img_size) for s in samples.values()) > 1024  # real crops at step 2
    by_id = {r.id: r for r in result.records}
    for sample_id, sample in samples.items():
        first, second = (s for s in steps if s["id"] == sample_id)
        w, h = sample.img_size
        fx, fy = fraction(sample_id)
        assert first["view"] == [0, 0, w, h] and first["outcome"] == "continued"
        x1, y1 = first["click"]
        assert abs(x1 - round(fx * 1000) / 1000 * w) < 1e-6
        view = reground_view(x1, y1, w, h)
        assert tuple(second["view"]) == view and second["outcome"] == "last"
        vw, vh = view[2] - view[0], view[3] - view[1]
        click = (view[0] + round(fx * 1000) / 1000 * vw, view[1] + round(fy * 1000) / 1000 * vh)
        record = by_id[sample_id]
        assert (record.pred_x, record.pred_y) == pytest.approx(click)
        assert tuple(second["click"]) == pytest.approx(click)
        assert record.calls == 2 and tuple(record.view or ()) == view
        assert record.completion_tokens == 18
    sizes = dict(backend.passes[1])
    assert all(max(size) <= 1024 for size in sizes.values())  # crops, not whole screenshots
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["prompt"]["protocol"] == "reground"
    summary = (out / "summary.md").read_text()
    assert "reground" in summary and "calls per sample" in summary
    steps_csv = (out / "steps.csv").read_text().splitlines()
    assert len(steps_csv) == 2 * N + 1 and "click_x" in steps_csv[0]


def test_interrupted_in_step_two_resumes_there_without_repeating_step_one(tmp_path, data_root):
    out = tmp_path / "stopped"
    config = config_for(data_root, "iterative-focusing")
    with pytest.raises(RunAbortedError):
        run(config, out, Script(die_after=N + 4, die_with=KeyboardInterrupt))
    steps = read_jsonl(out / "steps.jsonl")
    assert sorted(s["step"] for s in steps).count(1) == N and len(steps) == N + 4
    again = Script()
    result = run(config, out, again)
    by_step = [[sid for sid, _ in p] for p in again.passes]
    assert len(by_step[0]) == N - 4  # the rest of step 2 only; no step 1 at all
    assert set(by_step[0]).isdisjoint({s["id"] for s in steps if s["step"] == 2})
    assert len(by_step[1]) == N  # step 3 for everyone
    assert len(result.records) == N and all(r.calls == 3 for r in result.records)
    final_steps = read_jsonl(out / "steps.jsonl")
    assert len(final_steps) == 3 * N
    assert len({(s["id"], s["step"]) for s in final_steps}) == 3 * N


def test_an_answer_without_a_click_ends_that_sample_with_the_outcome_recorded(tmp_path, data_root):
    samples = sorted(s.id for s in load_release(data_root).samples)
    mute = samples[0]

    def some_mute(request: GroundingRequest) -> str:
        if request.sample_id == mute:
            return "I cannot see it"
        return answer(request)

    backend = ScriptedBackend(some_mute)
    result = run(config_for(data_root, "reground"), tmp_path / "mute", backend)
    steps = read_jsonl(tmp_path / "mute" / "steps.jsonl")
    mine = [s for s in steps if s["id"] == mute]
    assert [s["outcome"] for s in mine] == ["no-click"]
    record = next(r for r in result.records if r.id == mute)
    assert record.outcome == "wrong_format" and record.calls == 1
    assert backend.requested.count(mute) == 1  # no crop made from nothing


def test_a_failed_request_in_step_two_is_retried_from_step_two(tmp_path, data_root):
    samples = sorted(s.id for s in load_release(data_root).samples)
    flaky = samples[1]

    class FailSecond(Script):
        def generate(self, requests, sampling):
            self.fail_ids = {flaky} if self.passes else set()
            yield from super().generate(requests, sampling)

    out = tmp_path / "flaky"
    config = config_for(data_root, "reground")
    first = run(config, out, FailSecond())
    record = next(r for r in first.records if r.id == flaky)
    assert record.outcome == "failed" and record.calls == 2
    again = Script()
    result = run(config, out, again)
    assert [[sid for sid, _ in p] for p in again.passes] == [[flaky]]
    assert max(again.passes[0][0][1]) <= 1024  # step 2: the crop
    assert next(r for r in result.records if r.id == flaky).calls == 2


def test_the_protocol_is_an_outcome_setting(tmp_path, data_root):
    out = tmp_path / "one"
    run(config_for(data_root, "one-shot"), out, Script())
    assert not (out / "steps.jsonl").exists()
    with pytest.raises(RunRefusedError) as caught:
        run(config_for(data_root, "reground"), out, Script())
    assert "prompt.protocol" in str(caught.value)


def test_xy_pixels_sent_answers_in_a_crop_map_back_through_its_resize(tmp_path, data_root):
    """A Qwen-style answer (pixels of the image as the model saw it) in a crop: read in the
    crop's resized frame, then offset; checked against the resize computed here."""
    from screenspot_eval.adapters.registry import get_adapter

    adapter = get_adapter("qwen2.5-vl")

    def pixels(request: GroundingRequest) -> str:
        fx, fy = fraction(request.sample_id)
        w, h = request.image.size
        sw, sh = adapter.sent_size(w, h, budget=adapter_budget)
        return f"({round(fx * sw)},{round(fy * sh)})"

    config = config_for(
        data_root,
        "reground",
        **{
            "engine.adapter": "qwen2.5-vl",
            "engine.max_soft_tokens": None,
            "prompt.template": "qwen2.5-vl-point",
        },
    )
    from screenspot_eval.run.family import image_budget

    adapter_budget = image_budget(config.engine)
    result = run(config, tmp_path / "qwen", ScriptedBackend(pixels))
    steps = {(s["id"], s["step"]): s for s in read_jsonl(tmp_path / "qwen" / "steps.jsonl")}
    for record in result.records:
        view = steps[(record.id, 2)]["view"]
        vw, vh = view[2] - view[0], view[3] - view[1]
        sw, sh = adapter.sent_size(vw, vh, budget=adapter_budget)
        fx, fy = fraction(record.id)
        x = view[0] + round(fx * sw) * vw / sw
        y = view[1] + round(fy * sh) * vh / sh
        assert (record.pred_x, record.pred_y) == pytest.approx((x, y))


def test_steps_csv_reads_back_one_row_per_call_whatever_the_model_wrote(tmp_path, data_root):
    """Answers with newlines, quotes, commas and a formula-like start still give one CSV row
    per step, with the answer as written."""
    import pandas as pd

    def messy(request: GroundingRequest) -> str:
        return '=1+1, "quoted"\nline two\r\n' + answer(request)

    out = tmp_path / "messy"
    run(config_for(data_root, "reground"), out, ScriptedBackend(messy))
    steps = read_jsonl(out / "steps.jsonl")
    table = pd.read_csv(out / "steps.csv", keep_default_na=False)
    assert len(table) == len(steps) == 2 * N
    by_key = {(s["id"], s["step"]): s["raw_response"] for s in steps}
    for row in table.itertuples():
        assert "quoted" in row.raw_response and "line two" in row.raw_response
        assert by_key[(str(row.id), row.step)].endswith(row.raw_response[-20:])

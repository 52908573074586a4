"""A run that fails systematically stops early with a non-zero exit; isolated failures do not.

No vLLM: a scripted backend plays the failures (the engine test with ``enqueue_chat`` removed is
in ``tests/test_run_engine_compat.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.errors import EXIT_BACKEND_FAILURE
from screenspot_eval.run.config import resolve_config
from screenspot_eval.run.guard import SAME_ERROR_STREAK, FailureGuard
from screenspot_eval.run.session import RunAbortedError, execute_run
from screenspot_eval.store.records import PredictionRecord

N = 12


def _run(tmp_path: Path, backend: ScriptedBackend, **given: object):
    root = tmp_path / "data"
    synthesize_release(root, N, seed=0, max_width=320)
    config = resolve_config(
        None,
        {"engine.model": "fake/model", "engine.max_soft_tokens": 70, "data.source": str(root),
         "runtime.image_workers": 1, "runtime.prefetch": 2, **given},
    )  # fmt: skip
    out = tmp_path / "out"
    return out, execute_run(
        config, out, quiet=True, backend_factory=lambda _: backend, resume_command="again"
    )


def _ids(tmp_path: Path) -> list[str]:
    root = tmp_path / "data"
    synthesize_release(root, N, seed=0, max_width=320)
    return [s.id for s in load_release(root).samples]


def test_the_same_error_on_every_request_stops_the_run(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        lambda r: "", fail_ids=_ids(tmp_path), fail_error="AttributeError: no enqueue_chat"
    )
    with pytest.raises(RunAbortedError) as caught:
        _run(tmp_path, backend)
    error = caught.value
    assert error.exit_code == EXIT_BACKEND_FAILURE and error.resume == "again"
    assert f"the same error on {SAME_ERROR_STREAK} samples in a row" in str(error)
    assert "AttributeError: no enqueue_chat" in str(error)
    out = tmp_path / "out"
    kept = (out / "predictions.jsonl").read_text().splitlines()
    assert len(kept) == SAME_ERROR_STREAK  # the records written so far stay, for the resume
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_isolated_failures_are_recorded_and_the_run_completes(tmp_path: Path) -> None:
    ids = _ids(tmp_path)
    backend = ScriptedBackend(lambda r: "", fail_ids=ids[::3])
    _, result = _run(tmp_path, backend)
    assert sum(r.outcome.value == "failed" for r in result.records) == len(ids[::3])


def test_a_short_run_whose_every_sample_failed_does_not_end_with_exit_0(tmp_path: Path) -> None:
    """Fewer samples than the streak, all failed: still a broken run, not a run of misses."""
    limit = SAME_ERROR_STREAK - 3
    backend = ScriptedBackend(lambda r: "", fail_ids=_ids(tmp_path), fail_error="HTTP 500 (x)")
    with pytest.raises(RunAbortedError) as caught:
        _run(tmp_path, backend, **{"data.selection.limit": limit})
    assert caught.value.exit_code == EXIT_BACKEND_FAILURE and caught.value.resume == "again"
    assert f"every one of the {limit} samples failed" in str(caught.value)
    out = tmp_path / "out"
    assert len((out / "predictions.jsonl").read_text().splitlines()) == limit
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_a_resume_that_retries_only_failed_samples_is_not_a_broken_run(tmp_path: Path) -> None:
    ids = _ids(tmp_path)
    _run(tmp_path, ScriptedBackend(lambda r: "", fail_ids=ids[:2]))
    _, result = _run(tmp_path, ScriptedBackend(lambda r: "", fail_ids=ids[:2]))
    assert sum(r.outcome.value == "failed" for r in result.records) == 2


def _record(outcome: str, error: str | None) -> PredictionRecord:
    return PredictionRecord.model_construct(
        outcome=type("O", (), {"value": outcome})(), error=error
    )


def test_a_high_failure_share_stops_even_with_varied_errors() -> None:
    guard = FailureGuard()
    reasons = [
        guard.observe(_record("failed" if i % 4 else "correct", f"error {i}")) for i in range(40)
    ]
    assert reasons[-1] is not None and "failed (over 50%)" in reasons[-1]
    assert all(r is None for r in reasons[:31])


def test_a_parser_bug_is_failed_and_counted_apart_from_model_misses() -> None:
    import pandas as pd

    from screenspot_eval.protocol.parsing import FailureKind, ParseFailure
    from screenspot_eval.protocol.scoring import score_click
    from screenspot_eval.report.run_exports import failure_kinds

    bug = ParseFailure(kind=FailureKind.INTERNAL_ERROR, detail="TypeError: boom")
    assert score_click(bug, (0, 0, 1, 1)).outcome.value == "failed"
    miss = ParseFailure(kind=FailureKind.NO_COORDINATES, detail="no numbers")
    assert score_click(miss, (0, 0, 1, 1)).outcome.value == "wrong_format"
    frame = pd.DataFrame(
        {
            "outcome": ["failed", "failed", "failed", "wrong_format", "correct"],
            "failure_kind": [None, "internal_error", None, "no_coordinates", None],
            "error": [
                "HTTP 500",
                "internal parser error: TypeError: boom",
                "image: bad",
                None,
                None,
            ],
        }
    )
    assert failure_kinds(frame) == {
        "failed: image": 1,
        "failed: internal parser error": 1,
        "failed: request": 1,
        "wrong_format: no_coordinates": 1,
    }

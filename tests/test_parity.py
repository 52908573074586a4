"""`parity` without an engine: the metrics on hand-made numbers, token helpers, outputs, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from screenspot_eval.backends.overrides import (
    apply_to_config,
    merge_nested,
    nested,
    parse_overrides,
    read_value,
)
from screenspot_eval.backends.vllm.parity import (
    ReferenceAnswer,
    TokenMismatchError,
    _score_chunk,
    _until_placeholder,
    collapse_image_runs,
    describe_mismatch,
)
from screenspot_eval.cli.app import app
from screenspot_eval.errors import EXIT_USER_ERROR, UserError
from screenspot_eval.report.parity import write_parity
from screenspot_eval.run.parity import ParityOptions, engine_groups
from screenspot_eval.stats.parity import (
    FP32_TOLERANCE,
    PositionLogprobs,
    SwitchCheck,
    argmax_token,
    build_report,
    summarise,
    tolerance_verdict,
    topk_kl,
    verdict,
)

L = math.log


def pos(sample: str, position: int, ref: float, test: float, ref_top=None, test_top=None):
    token = 7
    return PositionLogprobs(
        sample_id=sample,
        position=position,
        token=token,
        ref_logprob=ref,
        test_logprob=test,
        ref_top=ref_top or {token: ref, 8: ref - 1.0},
        test_top=test_top or {token: test, 8: test - 1.0},
    )


# --- KL over HF's top-k -----------------------------------------------------------------------


def test_kl_of_identical_distributions_is_zero():
    top = {1: L(0.5), 2: L(0.3), 3: L(0.2)}
    assert topk_kl(top, dict(top)) == (0.0, 0)


def test_kl_by_hand_on_full_distributions():
    ref = {1: L(0.5), 2: L(0.25), 3: L(0.25)}
    test = {1: L(0.25), 2: L(0.5), 3: L(0.25)}
    kl, missing = topk_kl(ref, test)
    # 0.5 ln(0.5/0.25) + 0.25 ln(0.25/0.5) + 0 = 0.25 ln 2
    assert kl == pytest.approx(0.25 * math.log(2), abs=1e-12)
    assert missing == 0


def test_kl_renormalises_both_sides_over_hf_top_k():
    ref = {1: L(0.4), 2: L(0.2)}  # -> 2/3, 1/3
    test = {1: L(0.1), 2: L(0.1), 9: L(0.7)}  # token 9 is outside HF's top-k: ignored -> 1/2, 1/2
    kl, missing = topk_kl(ref, test)
    expected = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.5)
    assert kl == pytest.approx(expected, abs=1e-12)
    assert missing == 0


def test_kl_imputes_a_missing_token_with_the_lowest_returned_logprob():
    ref = {1: L(0.6), 2: L(0.4)}
    test = {1: L(0.5), 3: L(0.2)}  # token 2 not returned: takes 0.2
    kl, missing = topk_kl(ref, test)
    q1, q2 = 0.5 / 0.7, 0.2 / 0.7
    assert kl == pytest.approx(0.6 * math.log(0.6 / q1) + 0.4 * math.log(0.4 / q2), abs=1e-12)
    assert missing == 1


def test_argmax_breaks_ties_by_the_smaller_token_id():
    assert argmax_token({5: -1.0, 3: -1.0, 9: -2.0}) == 3
    assert argmax_token({5: -0.5, 3: -1.0}) == 5


# --- per-variant summary and verdict -----------------------------------------------------------


def test_summary_by_hand():
    positions = [
        pos("a", 0, -1.0, -1.1),  # |d| 0.1
        pos("a", 1, -2.0, -2.0),  # 0
        pos("b", 0, -0.5, -0.2),  # 0.3
        pos("b", 1, -3.0, -3.5),  # 0.5
    ]
    s = summarise("post", positions)
    assert (s.samples, s.positions) == (2, 4)
    assert s.max_abs_delta == pytest.approx(0.5)
    assert s.mean_abs_delta == pytest.approx(0.9 / 4)
    assert s.first_max_abs_delta == pytest.approx(0.3)
    assert s.first_mean_abs_delta == pytest.approx(0.2)
    assert s.first_token_agreement == 1.0 and s.first_token_agree_n == 2
    assert s.kl_imputed == 0


def test_first_token_agreement_counts_samples_whose_argmax_differs():
    agree = pos("a", 0, -1.0, -1.0, {7: -1.0, 8: -2.0}, {7: -1.0, 8: -2.0})
    differ = pos("b", 0, -1.0, -1.5, {7: -1.0, 8: -2.0}, {7: -1.5, 8: -0.4})
    later = pos("b", 1, -1.0, -1.0, {7: -1.0, 8: -2.0}, {8: -0.1, 7: -1.0})  # not the first
    s = summarise("post", [agree, differ, later])
    assert s.first_token_agree_n == 1 and s.first_token_agreement == 0.5


def _summary(variant: str, mean: float):
    return summarise(variant, [pos("a", 0, -1.0, -1.0 - mean)])


def test_verdict_names_the_smallest_mean_delta_and_the_margin():
    closest, line = verdict([_summary("post", 0.02), _summary("pre", 2e-7)])
    assert closest == "pre"
    assert line.startswith("closest to the HF reference: pre")
    assert "next post at 0.02" in line and "100,000x larger" in line


def test_verdict_names_exact_ties_together_first_in_order():
    closest, line = verdict(
        [_summary("pre", 2e-7), _summary("post", 0.02), _summary("native", 2e-7)]
    )
    assert closest == "pre"
    assert "tied with native" in line and "next post" in line


def test_verdict_with_one_variant():
    closest, line = verdict([_summary("post", 0.01)])
    assert closest == "post" and "only variant" in line


# --- the fp32 tolerance and the attention-switch check --------------------------------------


def _check(engine_change: float, reference_change: float, off: float) -> SwitchCheck:
    return SwitchCheck(
        key="text_config.use_bidirectional_attention",
        value="vision",
        variant="pre",
        engine_change=engine_change,
        reference_change=reference_change,
        off_mean=off,
        off_first_max=off,
    )


def test_tolerance_verdict_names_the_variants_within_it():
    closest, line = tolerance_verdict(
        [_summary("pre", 2e-7), _summary("post", 0.02)], FP32_TOLERANCE
    )
    assert closest == "pre"
    assert line.startswith("pre is within the fp32 tolerance (1e-05 on the first-token max")
    assert "closest to the HF reference: pre" in line


def test_tolerance_verdict_says_when_nothing_matches_and_where_the_deviation_lies():
    summaries = [_summary("pre", 0.03), _summary("post", 0.04)]
    closest, line = tolerance_verdict(summaries, FP32_TOLERANCE)
    assert closest == "pre"
    assert line.startswith("no variant is within the fp32 tolerance")
    assert "pre is closest" in line and "the deviation lies outside the embedder" in line


def test_an_ignored_switch_is_named_and_explains_the_gap_even_when_post_is_closest():
    summaries = [_summary("pre", 0.05), _summary("post", 0.04)]
    _, without = tolerance_verdict(summaries, FP32_TOLERANCE)
    assert "outside the embedder" not in without  # post closest: nothing says where, yet
    check = _check(engine_change=0.0, reference_change=0.2, off=1e-6)
    assert check.ignored_by_engine and check.within(FP32_TOLERANCE)
    _, line = tolerance_verdict(summaries, FP32_TOLERANCE, [check])
    assert "vLLM ignores text_config.use_bidirectional_attention='vision'" in line
    assert "outside the embedder" in line and "pre is within the tolerance" in line


def test_a_switch_both_sides_honour_is_not_called_ignored():
    check = _check(engine_change=0.2, reference_change=0.2, off=0.03)
    assert not check.ignored_by_engine and not check.within(FP32_TOLERANCE)
    assert "vLLM ignores" not in check.describe(FP32_TOLERANCE)
    assert "still not within" in check.describe(FP32_TOLERANCE)


def test_no_tolerance_is_applied_to_a_16_bit_side():
    _, line = tolerance_verdict([_summary("pre", 2e-3), _summary("post", 0.02)], None)
    assert line.startswith("closest to the HF reference: pre")
    assert "no tolerance applied" in line


def test_report_and_json_carry_the_tolerance_and_the_checks(tmp_path):
    scored = {"pre": [pos("a", 0, -1.0, -1.05)], "post": [pos("a", 0, -1.0, -1.2)]}
    check = _check(0.0, 0.2, 1e-6)
    report = build_report(
        scored, {"overrides": {}}, tolerance=FP32_TOLERANCE, switch_checks=[check]
    )
    assert report.within_tolerance == []
    write_parity(tmp_path, report, scored)
    payload = json.loads((tmp_path / "parity.json").read_text())
    assert payload["tolerance"] == FP32_TOLERANCE and payload["within_tolerance"] == []
    assert payload["switch_checks"][0]["ignored_by_engine"] is True


# --- config overrides (KEY=VALUE) -------------------------------------------------------------


def test_overrides_parse_json_values_and_plain_strings():
    parsed = parse_overrides(
        [
            "text_config.use_bidirectional_attention=null",
            "text_config.sliding_window=64",
            "a=vision",
        ]
    )
    assert parsed == {
        "text_config.use_bidirectional_attention": None,
        "text_config.sliding_window": 64,
        "a": "vision",
    }
    assert nested(parsed)["text_config"] == {
        "use_bidirectional_attention": None,
        "sliding_window": 64,
    }


@pytest.mark.parametrize("bad", ["novalue", "=1", "a..b=1", ".a=1"])
def test_a_malformed_override_is_a_user_error(bad):
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_overrides([bad])


def test_overrides_merge_into_existing_hf_overrides_and_apply_to_a_config():
    merged = merge_nested({"text_config": {"a": 1}, "k": "v"}, nested({"text_config.b": None}))
    assert merged == {"text_config": {"a": 1, "b": None}, "k": "v"}

    class Sub:
        use_bidirectional_attention = "vision"

    class Config:
        text_config = Sub()

    config = Config()
    apply_to_config(config, {"text_config.use_bidirectional_attention": None})
    assert config.text_config.use_bidirectional_attention is None
    assert read_value(config, "text_config.use_bidirectional_attention") is None
    with pytest.raises(UserError, match="no such field"):
        apply_to_config(config, {"text_config.nope": 1})


# --- token helpers ----------------------------------------------------------------------------


BOI, IMG, EOI = 5, 7, 6


def test_collapse_image_runs_restores_one_placeholder_per_image():
    expanded = [2, 3, BOI, IMG, IMG, IMG, EOI, 9, BOI, IMG, EOI, 4]
    assert collapse_image_runs(expanded, BOI, IMG, EOI) == [2, 3, IMG, 9, IMG, 4]


def test_collapse_leaves_anything_that_is_not_a_full_run():
    assert collapse_image_runs([BOI, 9, EOI], BOI, IMG, EOI) == [BOI, 9, EOI]
    assert collapse_image_runs([BOI, IMG, IMG], BOI, IMG, EOI) == [BOI, IMG, IMG]
    assert collapse_image_runs([BOI, EOI], BOI, IMG, EOI) == [BOI, EOI]


def test_an_answer_is_cut_before_its_first_placeholder_token():
    placeholders = frozenset({BOI, IMG, EOI})
    assert _until_placeholder([40, 41, IMG, 42], placeholders) == 2
    assert _until_placeholder([IMG, 41], placeholders) == 0
    assert _until_placeholder([40, 41], placeholders) == 2


def test_describe_mismatch_names_the_first_difference_and_image_counts():
    text = describe_mismatch([1, IMG, IMG, 2], [1, IMG, 2], IMG)
    assert "HF has 4 tokens (2 image tokens), vLLM 3 (1 image tokens)" in text
    assert "first difference at index 2" in text


class FakeLogprob:
    def __init__(self, logprob: float, rank: int):
        self.logprob, self.rank = logprob, rank


class FakeEngine:
    """What ``_score_chunk`` reads of a vLLM engine: ``llm.generate`` -> outputs."""

    def __init__(self, prompt_token_ids: list[int], prompt_logprobs: list):
        self.output = SimpleNamespace(
            prompt_token_ids=prompt_token_ids, prompt_logprobs=prompt_logprobs
        )
        self.llm = self
        self.prompts: list = []

    def generate(self, prompts, params, use_tqdm=False):
        self.prompts = prompts
        return [self.output]


REF = ReferenceAnswer(
    sample_id="s",
    prompt_ids=(2, BOI, IMG, IMG, EOI, 3),
    engine_prompt_ids=(2, IMG, 3),
    answer_ids=(40, 41),
    logprobs=(-1.0, -2.0),
    top=({40: -1.0}, {41: -2.0}),
)


def test_engine_scores_are_read_at_the_answer_positions():
    answer_rows = [
        {40: FakeLogprob(-1.1, 1), 50: FakeLogprob(-1.3, 2)},
        {50: FakeLogprob(-0.5, 1), 51: FakeLogprob(-0.9, 2), 41: FakeLogprob(-4.0, 9)},
    ]
    engine = FakeEngine([2, BOI, IMG, IMG, EOI, 3, 40, 41], [None] * 6 + answer_rows)
    [scores] = list(_score_chunk(engine, [(REF, "image")], None, 2, IMG))
    assert engine.prompts[0]["prompt_token_ids"] == [2, IMG, 3, 40, 41]
    assert engine.prompts[0]["multi_modal_data"] == {"image": "image"}
    assert scores.logprobs == (-1.1, -4.0)
    assert scores.top == ({40: -1.1, 50: -1.3}, {50: -0.5, 51: -0.9})  # rank <= k only


def test_a_prompt_vllm_expanded_differently_is_refused():
    engine = FakeEngine([2, BOI, IMG, EOI, 3, 40, 41], [None] * 7)
    with pytest.raises(TokenMismatchError, match="first difference at index 3"):
        list(_score_chunk(engine, [(REF, "image")], None, 2, IMG))


# --- outputs ----------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_write_parity_outputs(tmp_path: Path):
    scored = {
        "pre": [pos("a", 0, -1.0, -1.0 - 1e-7), pos("a", 1, -2.0, -2.0)],
        "post": [pos("a", 0, -1.0, -1.2), pos("a", 1, -2.0, -2.1)],
    }
    settings = {"model": "m", "vllm_dtype": "float32", "reference_device": "cpu", "top_k": 10}
    report = build_report(scored, settings)
    assert report.closest == "pre"
    files = write_parity(tmp_path, report, scored)
    rows = read_rows(files["parity.csv"])
    assert [r["variant"] for r in rows] == ["pre", "post"]
    assert float(rows[1]["first_max_abs_delta"]) == pytest.approx(0.2)
    positions = read_rows(files["parity_positions.csv"])
    assert len(positions) == 4
    md = files["parity.md"].read_text()
    assert f"**Verdict: {report.verdict}.**" in md
    assert "- vLLM dtype: `float32`" in md and "| pre |" in md and "renormalised" in md

    def no_nan(token: str) -> float:
        raise AssertionError(f"non-JSON constant {token}")

    payload = json.loads(files["parity.json"].read_text(), parse_constant=no_nan)
    assert payload["closest"] == "pre" and payload["settings"]["model"] == "m"


def test_json_has_no_nan_when_a_variant_has_no_first_position(tmp_path: Path):
    scored = {"pre": [pos("a", 1, -1.0, -1.0)]}
    files = write_parity(tmp_path, build_report(scored), scored)
    payload = json.loads(files["parity.json"].read_text())
    assert payload["variants"][0]["first_max_abs_delta"] is None


# --- orchestration helpers and the command line ------------------------------------------------


def test_pre_and_post_share_an_engine_native_gets_its_own():
    assert engine_groups(("pre", "post", "native")) == [("pre", "post"), ("native",)]
    assert engine_groups(("native", "post")) == [("native",), ("post",)]
    assert engine_groups(("post", "native", "pre")) == [("post", "pre"), ("native",)]


@pytest.mark.parametrize("variants", [(), ("pre", "pre"), ("pre", "mid")])
def test_bad_variant_lists_are_refused(variants):
    with pytest.raises(UserError):
        ParityOptions(variants=variants).check()


def dry_run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["parity", "--model", "m", *args, "--print-config"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def test_parity_defaults_to_float32_and_20_samples_and_three_variants():
    shown = dry_run()
    assert shown["llm_kwargs"]["dtype"] == "float32"
    assert shown["config"]["data"]["selection"]["limit"] == 20
    assert shown["parity"]["engines"] == [["pre", "post"], ["native"]]
    assert (
        shown["parity"]["image_budget"]
        == shown["llm_kwargs"]["mm_processor_kwargs"]["max_soft_tokens"]
    )
    assert shown["parity"]["vllm_top_k"] == 20 and "max_logprobs" not in shown["llm_kwargs"]


def test_parity_options_override_the_defaults():
    shown = dry_run(
        "--dtype", "bfloat16", "--samples", "5", "--variant", "post,native", "--top-k", "16"
    )
    assert shown["llm_kwargs"]["dtype"] == "bfloat16"
    assert shown["config"]["data"]["selection"]["limit"] == 5
    assert shown["parity"]["variants"] == ["post", "native"]
    assert shown["llm_kwargs"]["max_logprobs"] == 32  # vLLM returns 2k tokens per position


def test_samples_and_a_different_limit_are_refused():
    result = CliRunner().invoke(
        app, ["parity", "--model", "m", "--samples", "5", "--limit", "6", "--print-config"]
    )
    assert result.exit_code == EXIT_USER_ERROR
    assert "disagree" in result.output

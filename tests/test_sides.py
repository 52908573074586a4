"""A side of an A/B is a variant plus engine-side settings; the factor is what differs.

Pure logic of `compare --a-set/--b-set/--sides/--factor`: parsing and applying settings, the
factor and what it may change, the refusals (a setting that did not reach the model, a factor
without effect, an undeclared difference, a declared factor that does not differ), and the
command line handing the library exactly the sides it was given. The real engine runs these in
tests/test_factor_engine.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_provenance
from test_provenance import scripted_run
from typer.testing import CliRunner

from screenspot_eval.backends.overrides import parse_settings
from screenspot_eval.backends.sides import (
    EMBEDDER,
    NoEffectError,
    SettingNotAppliedError,
    SettingReading,
    SideSettings,
    allowed_paths,
    apply_settings,
    describe_factor,
    explained,
    factor_of,
    probe_difference,
    require_applied,
    require_effect,
    resolve_sides,
    side_settings,
)
from screenspot_eval.backends.vllm.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.errors import UserError
from screenspot_eval.run.compare import RunMismatchError, compare_runs
from screenspot_eval.run.factor import (
    FactorMismatchError,
    as_built,
    check_server_factor,
    requested,
)

REPO = Path(__file__).resolve().parents[1]
BIDI = "text_config.use_bidirectional_attention"
BASE = EngineSettings(model="m", dtype="float32", extra={"hf_overrides": {"text_config": {"x": 1}}})


def side(items: list[str], option: str = "--b-set") -> dict[str, Any]:
    return side_settings(parse_settings(items, option), option)


def test_settings_read_values_as_json_and_refuse_what_is_not_a_side_setting():
    parsed = side([f"{BIDI}=null", "dtype=bfloat16", "enforce_eager=true"])
    assert parsed == {BIDI: None, "dtype": "bfloat16", "enforce_eager": True}
    for bad, named in (("norm=pre", "--a / --b"), ("model=x", "same checkpoint"), ("dtype", "")):
        with pytest.raises(UserError, match="--b-set") as info:
            side([bad])
        assert named in str(info.value)


def test_a_dotted_key_is_a_config_override_and_a_plain_key_an_engine_argument():
    side = apply_settings(BASE, {BIDI: None, "dtype": "bfloat16", "attention_backend": "X"})
    assert side.dtype == "bfloat16"
    assert side.extra["attention_backend"] == "X"
    # merged into the base's own overrides, not replacing them
    assert side.extra["hf_overrides"] == {
        "text_config": {"x": 1, "use_bidirectional_attention": None}
    }
    kwargs = llm_kwargs(side.model_copy(update={"norm": "pre"}))
    assert kwargs["hf_overrides"]["text_config"]["use_bidirectional_attention"] is None
    assert kwargs["dtype"] == "bfloat16" and kwargs["attention_backend"] == "X"
    top = apply_settings(BASE, {"hf_overrides.image_token_id": 7})
    assert top.extra["hf_overrides"]["image_token_id"] == 7
    with pytest.raises(UserError, match="valid engine settings"):
        apply_settings(BASE, {"tensor_parallel_size": "many"})


def test_the_factor_is_what_differs_as_each_side_resolves_against_the_base():
    a = SideSettings(variant="pre", settings={"dtype": "float32"})
    b = SideSettings(variant="pre", settings={"dtype": "bfloat16", "text_config.x": 1})
    # text_config.x=1 is what the base already says: no factor
    assert factor_of(a, b, BASE) == {"dtype": ("float32", "bfloat16")}
    c = SideSettings(variant="post", settings={BIDI: None})
    assert factor_of(a, c, BASE) == {EMBEDDER: ("pre", "post"), BIDI: ("<checkpoint>", None)}
    assert factor_of(a, a, BASE) == {}
    assert describe_factor({"dtype": ("float32", "bfloat16")}) == 'dtype "float32" -> "bfloat16"'


def test_a_declared_factor_explains_its_own_settings_and_what_the_engine_resolved_from_it():
    paths = allowed_paths(["dtype", BIDI, "attention_backend", "vllm"])
    assert explained('settings.engine.dtype: "float32" -> "bfloat16"', paths)
    assert explained('provenance.parameter_dtypes: ["float32"] -> ["bfloat16"]', paths)
    assert explained(f"settings.engine.extra.hf_overrides.{BIDI}: 1 -> null", paths)
    assert explained('provenance.attention_backends: ["a"] -> ["b"]', paths)
    assert explained('provenance.vllm_version: "0.32.0" -> "0.34.0"', paths)
    assert not explained('provenance.device_name: "a" -> "b"', paths)
    assert not explained("settings.engine.dtypes: 1 -> 2", paths)  # a prefix, not a field
    assert not explained("settings.sampling.temperature: 0.0 -> 1.0", paths)


def test_sides_come_from_the_command_line_over_the_file_over_post_vs_pre(tmp_path):
    assert resolve_sides(None, None) == (SideSettings(variant="post"), SideSettings(variant="pre"))
    shipped = REPO / "configs" / "factors" / "bidirectional-off.toml"
    a, b = resolve_sides(None, None, file=shipped)
    assert (a.variant, a.settings) == ("pre", {})
    assert (b.variant, b.settings) == ("pre", {BIDI: None})
    a, b = resolve_sides("post", None, (), ["dtype=bfloat16"], file=shipped)
    assert a.variant == "post" and b.settings == {BIDI: None, "dtype": "bfloat16"}
    with pytest.raises(UserError, match="--a must be one of"):
        resolve_sides("sideways", None)


def test_every_shipped_sides_file_resolves_and_declares_a_factor():
    files = sorted((REPO / "configs" / "factors").glob("*.toml"))
    assert files
    for path in files:
        a, b = resolve_sides(None, None, file=path)
        assert set(factor_of(a, b, EngineSettings(model="m"))) - {EMBEDDER}, path.name


def test_sides_with_settings_default_to_one_variant_so_the_embedder_is_no_second_factor():
    a, b = resolve_sides(None, None, (), ["dtype=bfloat16"])
    assert (a.variant, b.variant) == ("pre", "pre")
    a, b = resolve_sides("post", None, (), ["dtype=bfloat16"])  # asked for: both factors
    assert factor_of(a, b, BASE) == {EMBEDDER: ("post", "pre"), "dtype": ("float32", "bfloat16")}


def test_a_setting_has_one_spelling_and_is_given_once():
    long = parse_settings(["hf_overrides.text_config.x=2"], "--a-set")
    assert long == parse_settings(["text_config.x=2"], "--b-set") == {"text_config.x": 2}
    assert parse_settings(["hf_overrides.image_token_id=7"], "--a-set") == {
        "hf_overrides.image_token_id": 7
    }
    with pytest.raises(UserError, match="given twice"):
        parse_settings(["dtype=float16", "dtype=bfloat16"], "--b-set")
    with pytest.raises(UserError, match="given twice"):
        parse_settings(["text_config.x=1", "hf_overrides.text_config.x=2"], "--b-set")
    with pytest.raises(UserError, match="one is a field of the other"):
        parse_settings(["text_config.x=1", "text_config.x.y=2"], "--b-set")
    with pytest.raises(UserError, match="places the engine"):
        side(["max-num-seqs=4"])


def test_an_invalid_engine_value_on_a_side_is_a_clear_error():
    with pytest.raises(UserError, match="max_soft_tokens must be one of"):
        apply_settings(BASE, {"max_soft_tokens": 100})


def test_a_sides_file_reads_tables_as_the_command_line_reads_keys(tmp_path):
    path = tmp_path / "sides.toml"
    path.write_text(
        f"[b]\nvariant = 'pre'\nnull = ['{BIDI}']\n[b.set]\n"
        "mm-processor-kwargs = { max_soft_tokens = 560 }\n"
    )
    a, b = resolve_sides(None, None, file=path)
    assert b.settings == {BIDI: None, "mm_processor_kwargs": {"max_soft_tokens": 560}}
    assert a.variant == "pre"  # settings on a side: one variant by default


def test_a_sides_file_value_keeps_its_toml_type(tmp_path):
    """No round trip through JSON text: the string "true" stays a string, 64 an integer."""
    path = tmp_path / "sides.toml"
    path.write_text(
        "[b.set]\n'text_config.a' = 'true'\n'text_config.b' = '64'\n'text_config.c' = 64\n"
        "'text_config.d' = '{\"k\": 1}'\nenforce-eager = true\n"
    )
    _, b = resolve_sides(None, None, file=path)
    assert b.settings == {
        "text_config.a": "true",
        "text_config.b": "64",
        "text_config.c": 64,
        "text_config.d": '{"k": 1}',
        "enforce_eager": True,
    }
    path.write_text(f"[b.set]\n'{BIDI}' = 'null'\n")  # the text null is no null: refused
    with pytest.raises(UserError, match=r"TOML has no null value: list the setting in null"):
        resolve_sides(None, None, file=path)


def test_dashes_and_underscores_are_one_setting_on_both_sides():
    """``--a-set enforce_eager=true --b-set enforce-eager=true`` is no factor (an A/A)."""
    a, b = resolve_sides("pre", "pre", ["enforce_eager=true"], ["enforce-eager=true"])
    assert a.settings == b.settings == {"enforce_eager": True}
    assert factor_of(a, b, BASE) == {}
    with pytest.raises(UserError, match="--b-set enforce_eager: given twice"):
        resolve_sides(None, None, (), ["enforce_eager=true", "enforce-eager=false"])
    path_a = parse_settings(["hf-overrides.text-config.x=1"], "--a-set")
    assert path_a == {"text_config.x": 1}


def test_a_broken_sides_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "sides.toml"
    for text, message in (
        ("[a\n", "not valid TOML"),
        ("[c]\nvariant='pre'\n", r"only tables \[a\] and \[b\]"),
        ("[b.set]\nnorm='pre'\n", r"\[b.set\] norm"),
        ("a = 'pre'\n", "must be tables"),
        ("[a]\nset = 'x'\n", "must be tables"),
        ("[a]\nvaraint = 'pre'\n", r"only variant, set and null, not \['varaint'\]"),
        ("[a]\nnull = 'x'\n", "null must be a list"),
        ("[a]\nvariant = 3\n", "variant must be a string"),
    ):
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            resolve_sides(None, None, file=bad)
    bad.write_text("[a]\nvariant='sideways'\n")
    with pytest.raises(UserError, match="--a must be one of"):
        resolve_sides(None, None, file=bad)
    bad.write_text("[b.set]\nwhen = 2026-12-06\n")  # a TOML date: read as text, no crash
    assert resolve_sides(None, None, file=bad)[1].settings == {"when": "2026-12-06"}
    with pytest.raises(UserError, match="not found"):
        resolve_sides(None, None, file=tmp_path / "missing.toml")


def reading(**fields: Any) -> SettingReading:
    base = {"key": "dtype", "requested": "bfloat16", "resolved": "bfloat16", "where": "w"}
    return SettingReading(**{**base, "reached": True, **fields})


def test_a_setting_that_did_not_reach_the_model_is_refused_by_name():
    require_applied("B", [reading()])
    with pytest.raises(SettingNotAppliedError, match='side B: dtype="bfloat16" did not reach'):
        require_applied("B", [reading(resolved="float32", reached=False)])
    with pytest.raises(SettingNotAppliedError, match="cannot be shown to reach"):
        require_applied("B", [reading(reached=None)])


def test_a_factor_without_effect_on_the_probe_is_refused_never_reported_as_zero():
    factor = {BIDI: ("vision", None)}
    line = require_effect(factor, probe_difference({1: -0.5, 2: -1.0}, {1: -0.4, 2: -1.0}))
    assert "max diff 0.1" in line
    assert "different top tokens" in require_effect(factor, probe_difference({1: 0.0}, {2: 0.0}))
    with pytest.raises(NoEffectError) as info:
        require_effect(factor, probe_difference({1: -0.5}, {1: -0.5}), ["A: kernel ignores it"])
    message = str(info.value)
    assert '"vision" -> null' in message and "A: kernel ignores it" in message
    assert "\n" not in message and "0.0 pp" in message


def test_the_factor_is_shown_as_the_engines_built_it():
    factor = {BIDI: ("<checkpoint>", None), "dtype": ("auto", "bfloat16")}
    readings_a = [reading(key=BIDI, resolved="vision"), reading(resolved="float32")]
    readings_b = [reading(key=BIDI, resolved=None), reading(resolved="bfloat16")]
    built = as_built(factor, readings_a, readings_b)
    assert built == {BIDI: ("vision", None), "dtype": ("float32", "bfloat16")}


def test_each_side_asks_for_its_own_settings_over_the_shared_ones():
    a = apply_settings(BASE, {"dtype": "bfloat16"})
    assert requested(a, ["dtype", BIDI, "text_config.x", "attention_backend"]) == {
        "dtype": "bfloat16",
        BIDI: "<checkpoint>",
        "text_config.x": 1,
        "attention_backend": "<vLLM default>",
    }
    assert requested(BASE, ["dtype"]) == {"dtype": "float32"}  # B did not set it: the shared one


def test_two_servers_must_differ_in_the_declared_release_and_in_nothing_else():
    old, new = fake_provenance(), fake_provenance(vllm_version="0.34.0", torch_version="2.14")
    line = check_server_factor(("vllm",), old, new)
    assert '"0.32.0" -> "0.34.0"' in line and "torch_version" in line
    with pytest.raises(FactorMismatchError, match="does not differ"):
        check_server_factor(("vllm",), old, old)
    with pytest.raises(FactorMismatchError, match=r"provenance\.dtype"):
        check_server_factor(("vllm",), old, fake_provenance(vllm_version="0.34.0", dtype="x"))
    with pytest.raises(FactorMismatchError, match="/screenspot/engine"):
        check_server_factor(("vllm",), old, None)


def side_record(name: str, factor: dict[str, list[Any]]) -> dict[str, Any]:
    return {"name": name, "variant": "pre", "settings": {}, "factor": factor}


DTYPE = {"dtype": ["float32", "bfloat16"]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from screenspot_eval.data.synth import synthesize_release

    root = tmp_path_factory.mktemp("data")
    synthesize_release(root, 6, seed=0, max_width=320)
    return root


def test_compare_allows_the_declared_factor_names_it_and_refuses_anything_else(data_root, tmp_path):
    def side_run(name: str, provenance: Any, **overrides: Any) -> Path:
        record = side_record(name, DTYPE)
        return scripted_run(data_root, tmp_path / name, provenance, side=record, **overrides)

    a = side_run("a", provenance=fake_provenance(), **{"engine.dtype": "float32"})
    b = side_run("b", provenance=fake_provenance(dtype="bfloat16", parameter_dtypes=("bfloat16",)),
                 **{"engine.dtype": "bfloat16"})  # fmt: skip
    result = compare_runs(a, b, tmp_path / "cmp", n_resamples=200)
    assert result.headline.startswith('factor dtype "float32" -> "bfloat16": ')
    assert '[dtype="bfloat16"]' in result.headline
    assert any(n.startswith("declared factor: settings.engine.dtype") for n in result.notes)

    c = side_run("c", provenance=fake_provenance(dtype="bfloat16", device_name="other"),
                 **{"engine.dtype": "bfloat16"})  # fmt: skip
    with pytest.raises(RunMismatchError, match=r"more than the declared factor \(dtype\)") as info:
        compare_runs(a, c, tmp_path / "cmp2", n_resamples=200)
    assert 'provenance.device_name: "cpu (x86_64)" -> "other"' in str(info.value)


def test_compare_of_two_folders_takes_a_declared_release_factor(data_root, tmp_path):
    a = scripted_run(data_root, tmp_path / "a", fake_provenance())
    b = scripted_run(data_root, tmp_path / "b", fake_provenance(vllm_version="0.34.0"))
    with pytest.raises(RunMismatchError, match="vllm_version"):
        compare_runs(a, b, tmp_path / "refused", n_resamples=200)
    result = compare_runs(a, b, tmp_path / "cmp", factor=("vllm",), n_resamples=200)
    assert result.headline.startswith('factor vllm_version "0.32.0" -> "0.34.0": ')
    assert '[vllm_version="0.34.0"]' in result.headline
    same = scripted_run(data_root, tmp_path / "same", fake_provenance())
    with pytest.raises(RunMismatchError, match="do not differ in the declared factor"):
        compare_runs(a, same, tmp_path / "none", factor=("vllm",), n_resamples=200)


def test_the_command_hands_the_library_exactly_the_sides_it_was_given(monkeypatch, tmp_path):
    from screenspot_eval.cli.app import app
    from screenspot_eval.run import compare

    seen: dict[str, Any] = {}

    def fake_compare(config, a, b, how, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(config=config, a=a, b=b, how=how)
        raise UserError("stop here")

    monkeypatch.setattr(compare, "compare_variants", fake_compare)
    args = ["compare", "--model", "m", "--out", str(tmp_path), "--a", "pre", "--b", "pre"]
    args += ["--b-set", f"{BIDI}=null", "--b-set", "dtype=bfloat16", "--a-set", "dtype=float32"]
    result = CliRunner().invoke(app, args)
    assert "stop here" in result.output
    assert seen["a"] == SideSettings(variant="pre", settings={"dtype": "float32"})
    assert seen["b"] == SideSettings(variant="pre", settings={BIDI: None, "dtype": "bfloat16"})
    assert seen["how"].factor == ()
    shipped = REPO / "configs" / "factors" / "bidirectional-off.toml"
    CliRunner().invoke(app, ["compare", "--model", "m", "--out", str(tmp_path),
                             "--sides", str(shipped), "--factor", "vllm"])  # fmt: skip
    assert seen["b"].settings == {BIDI: None} and seen["how"].factor == ("vllm",)
    json.dumps(seen["b"].model_dump())  # recordable as given


def test_what_the_proven_engines_resolved_from_the_factor_is_allowed_and_listed(
    data_root, tmp_path
):
    record = {**side_record("x", DTYPE), "resolved_from_factor": ["attention_backends"]}
    a = scripted_run(
        data_root, tmp_path / "a", fake_provenance(), side=record, **{"engine.dtype": "float32"}
    )
    changed = fake_provenance(
        dtype="bfloat16", parameter_dtypes=("bfloat16",), attention_backends=("decoder:OTHER",)
    )
    b = scripted_run(
        data_root, tmp_path / "b", changed, side=record, **{"engine.dtype": "bfloat16"}
    )
    result = compare_runs(a, b, tmp_path / "cmp", n_resamples=200)
    assert any("provenance.attention_backends" in n for n in result.notes)
    plain = scripted_run(data_root, tmp_path / "c", changed, side=side_record("c", DTYPE),
                         **{"engine.dtype": "bfloat16"})  # fmt: skip
    with pytest.raises(RunMismatchError, match="attention_backends"):
        compare_runs(a, plain, tmp_path / "cmp2", n_resamples=200)


def test_settings_against_servers_and_a_factor_beside_settings_are_refused(tmp_path):
    from screenspot_eval.run.compare import SideRuns, compare_variants
    from screenspot_eval.run.config import resolve_config

    config = resolve_config(None, {"engine.model": "m", "out": str(tmp_path)})
    a, b = SideSettings(variant="pre"), SideSettings(variant="pre", settings={"dtype": "half"})
    served = SideRuns(endpoint_a="http://127.0.0.1:1", endpoint_b="http://127.0.0.1:2")
    with pytest.raises(UserError, match="a server's settings are set where it is served"):
        compare_variants(config, a, b, served)
    with pytest.raises(UserError, match="--factor declares what differs"):
        compare_variants(config, a, b, SideRuns(factor=("vllm",)))
    with pytest.raises(UserError, match="each needs an engine of its own"):
        compare_variants(config, a, b, SideRuns(engines="one"))
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_one_setting_in_two_spellings_builds_the_same_engine_on_both_sides(tmp_path):
    """``--a-set enforce_eager=true --b-set enforce-eager=true``: both sides' vLLM arguments are
    the same (no factor; the compare is an A/A control), as ``--enforce-eager`` builds them."""
    from screenspot_eval.cli.app import app

    args = ["compare", "--model", "m", "--a", "pre", "--b", "pre", "--out", str(tmp_path)]
    result = CliRunner().invoke(
        app,
        [*args, "--a-set", "enforce_eager=true", "--b-set", "enforce-eager=true", "--print-config"],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    a, b = (shown[side]["llm_kwargs"] for side in ("a", "b"))
    assert a == b and a["enforce_eager"] is True
    flag = CliRunner().invoke(app, [*args, "--enforce-eager", "--print-config"])
    assert json.loads(flag.stdout)["llm_kwargs"] == a  # the shared settings: one engine
    sides = resolve_sides("pre", "pre", ["enforce_eager=true"], ["enforce-eager=true"])
    assert factor_of(*sides, EngineSettings(model="m")) == {}

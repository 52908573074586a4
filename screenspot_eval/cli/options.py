"""Every command-line option, defined once: its name, type, help and the config key it sets.

Options come in groups (:data:`MODEL`, :data:`ENGINE`, :data:`DATA`, ...). A command declares
the groups it takes with :func:`with_options`; the decorator adds their parameters to the
command's signature (so Typer shows them) and hands the command one :class:`Given` holding what
the user typed. ``Given.resolve()`` turns that into a :class:`RunConfig` through the one path
every command uses: command-line values > config file > the command's defaults > built-in
defaults. Adding an option is one :class:`Opt` line in a group.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED

if TYPE_CHECKING:
    from screenspot_eval.run.config import RunConfig


def option(kind: Any, *names: str, help: str, panel: str | None = None, **extra: Any) -> Any:
    """One command-line option: its type, names and help in one place (the ``Annotated`` type
    Typer reads from a command's signature)."""
    return Annotated[kind, typer.Option(*names, help=help, rich_help_panel=panel, **extra)]


ENGINE = "Engine (vLLM)"
MODEL = "Model"

ModelOpt = option(
    str | None, "--model", "-m", help="HF repo id or local checkpoint folder.", panel=MODEL
)
NormOpt = option(
    str | None,
    "--norm",
    help="Embedder variant: pre (HF reference), post (vLLM <= 0.19) or native (untouched).",
    panel=MODEL,
)
RevisionOpt = option(str | None, "--revision", help="Model revision (hub).", panel=MODEL)
AdapterOpt = option(
    str | None,
    "--adapter",
    help="Model family: gemma4, qwen2-vl, qwen2.5-vl or qwen3-vl (default: read from the "
    "checkpoint's architecture, or the served model's).",
    panel=MODEL,
)
PresetOpt = option(
    str | None,
    "--preset",
    help="A published grounding model's prompt, convention and image budget "
    "(`screenspot-eval presets` lists them).",
    panel=MODEL,
)
DtypeOpt = option(str | None, "--dtype", help="Model dtype.", panel=ENGINE)
SeedOpt = option(int | None, "--seed", help="Engine seed.", panel=ENGINE)
MaxModelLenOpt = option(int | None, "--max-model-len", help="Context length.", panel=ENGINE)
MaxNumSeqsOpt = option(
    int | None, "--max-num-seqs", help="Max sequences batched at once.", panel=ENGINE
)
GpuMemOpt = option(
    float | None, "--gpu-memory-utilization", help="Fraction of GPU memory.", panel=ENGINE
)
TensorParallelOpt = option(
    int | None, "--tensor-parallel-size", "--tp", help="Tensor parallel size.", panel=ENGINE
)
DataParallelOpt = option(
    int | None, "--data-parallel-size", "--dp", help="Data parallel size.", panel=ENGINE
)
ExecutorOpt = option(
    str | None,
    "--distributed-executor-backend",
    help="mp, ray, uni (passed to vLLM).",
    panel=ENGINE,
)
EnforceEagerOpt = option(
    bool | None, "--enforce-eager/--no-enforce-eager", help="Disable graph capture.", panel=ENGINE
)
EngineCoreOpt = option(
    str | None,
    "--engine-core",
    help="Where an in-process engine's core and worker run: auto (default; inline on the "
    "CPU build, where vLLM's engine processes spin-wait on the same cores, else vLLM's own "
    "process), process, or inline (VLLM_ENABLE_V1_MULTIPROCESSING=0). No outcome changes.",
    panel=ENGINE,
)
BatchInvariantOpt = option(
    bool | None,
    "--batch-invariant/--no-batch-invariant",
    help="vLLM's batch-invariant mode (VLLM_BATCH_INVARIANT=1 in every engine process): "
    "outcomes that do not depend on batch composition, at a speed cost; checked inside "
    "the workers before any sample runs.",
    panel=ENGINE,
)
AllowUntestedVllmOpt = option(
    bool | None,
    "--allow-untested-vllm",
    help="Run on an installed vLLM outside the supported range (refused otherwise, before "
    "the engine starts); recorded in the manifest.",
    panel=ENGINE,
)
MaxSoftTokensOpt = option(
    int | None,
    "--max-soft-tokens",
    help="Image budget in soft tokens: 70, 140, 280, 560 or 1120 (default: the checkpoint's).",
    panel=ENGINE,
)
EngineArgOpt = option(
    list[str] | None,
    "--engine-arg",
    help="Any other vLLM engine argument as key=value (value parsed as JSON when it can be).",
    panel=ENGINE,
)
OutDirOpt = option(Path | None, "--out", "-o", help="Results folder (e.g. results/NAME).")


# --- run / compare options: all default to None so a --config file can supply them ------------

DATA = "Data"
PROMPT = "Prompt and decoding"
RUNTIME = "Runtime"

ConfigOpt = option(
    Path | None, "--config", "-c", help="TOML run config (configs/*.toml); options given here win."
)
DataOpt = option(
    str | None,
    "--data",
    "-d",
    help="Dataset: a folder in the official layout, a parquet file, or a hub id "
    "(default likaixin/ScreenSpot-Pro).",
    panel=DATA,
)
DataRevisionOpt = option(
    str | None, "--data-revision", help="Hub revision of the dataset.", panel=DATA
)
LayoutOpt = option(
    str | None,
    "--layout",
    help="Dataset layout: screenspot-pro (default), screenspot-v2, osworld-g or "
    "osworld-g-refined (screenspot_eval.data.layouts).",
    panel=DATA,
)
StrictOpt = option(
    bool | None,
    "--strict/--lenient",
    help="Strict (default): any invalid sample stops the run. Lenient: exclude and list it.",
    panel=DATA,
)
GroupOpt = option(list[str] | None, "--group", help="Only these groups.", panel=DATA)
ApplicationOpt = option(
    list[str] | None, "--application", help="Only these applications.", panel=DATA
)
PlatformOpt = option(list[str] | None, "--platform", help="Only these platforms.", panel=DATA)
UiTypeOpt = option(list[str] | None, "--ui-type", help="Only text or icon targets.", panel=DATA)
IdOpt = option(list[str] | None, "--id", help="Only these sample ids.", panel=DATA)
LimitOpt = option(int | None, "--limit", min=0, help="At most this many samples.", panel=DATA)
LanguageOpt = option(
    str | None, "--language", help="Instruction language: en or cn (instruction_cn).", panel=DATA
)
PromptOpt = option(
    str | None,
    "--prompt",
    help="Prompt template: a built-in name (default: the model family's own) or a .toml path.",
    panel=PROMPT,
)
ConventionOpt = option(
    str | None,
    "--convention",
    help="Override the template's coordinate convention: yx-1000, xy-1000, xy-1, "
    "xy-pixels-sent, xy-pixels-original.",
    panel=PROMPT,
)
ProtocolOpt = option(
    str | None,
    "--protocol",
    help="How many looks the model gets: one-shot (default), reground, iterative-focusing, "
    "iterative-narrowing, or zoom:steps=N,ratio=R,min=PX (each step after the first sends a "
    "crop around the previous click).",
    panel=PROMPT,
)
TemperatureOpt = option(
    float | None, "--temperature", help="Sampling temperature (0 = greedy).", panel=PROMPT
)
MaxTokensOpt = option(int | None, "--max-tokens", min=1, help="Answer token limit.", panel=PROMPT)
StructuredOpt = option(
    bool | None,
    "--structured/--no-structured",
    help="Constrain decoding to the template's answer format (vLLM structured outputs).",
    panel=PROMPT,
)
EndpointOpt = option(
    list[str] | None,
    "--endpoint",
    help="OpenAI-compatible vLLM server URL(s) instead of the in-process engine "
    "(repeatable or comma-separated).",
    panel=RUNTIME,
)
ApiKeyOpt = option(
    str | None, "--api-key", envvar="SCREENSPOT_API_KEY", help="Server API key.", panel=RUNTIME
)
ConcurrencyOpt = option(
    int | None, "--concurrency", min=1, help="Requests in flight per endpoint.", panel=RUNTIME
)
ImagePrepOpt = option(
    str | None,
    "--image-prep",
    help="auto (default): in-process, resize screenshots in the decode pool to the size "
    "Gemma 4's processor uses, where a self-check proves identical pixel_values; off: "
    "send every screenshot as decoded.",
    panel=RUNTIME,
)
ImageUuidsOpt = option(
    bool | None,
    "--image-uuids/--no-image-uuids",
    help="Give every image a stable uuid (file sha256, budget, preparation) so vLLM does "
    "not hash its pixels (default on).",
    panel=RUNTIME,
)
ImageTransferOpt = option(
    str | None,
    "--image-transfer",
    help="Against servers: auto (file:// where the server reads the dataset, else the "
    "file's bytes, else a PNG re-encode), bytes (never file://), reencode (always decode "
    "and re-encode).",
    panel=RUNTIME,
)
ImageWorkersOpt = option(
    int | None, "--image-workers", min=1, help="Image decode threads.", panel=RUNTIME
)
VerboseOpt = option(
    bool | None,
    "--verbose/--no-verbose",
    "-v",
    help="Show vLLM's logs on the terminal too (they always go to vllm.log in --out).",
    panel=RUNTIME,
)
RepeatsOpt = option(
    int,
    "--repeats",
    min=1,
    help="Run each variant K times (into r1..rK), perturbing only what must not matter "
    "(order, batch, prefix cache; the sampling seed at temperature > 0), and report the "
    "within-variant noise floor.",
    panel=RUNTIME,
)
RestartOpt = option(bool, "--restart", help="Discard what the results folder holds and start over.")
QuietOpt = option(bool, "--quiet", "-q", help="No progress bar (for logs).")
PrintConfigOpt = option(
    bool, "--print-config", help="Print the resolved config and vLLM engine arguments, then exit."
)


COMPARE = "Comparison"

VariantAOpt = option(
    str | None, "--a", help="Variant A (the baseline) [default: post].", panel=COMPARE
)
VariantBOpt = option(
    str | None, "--b", help="Variant B (the change) [default: pre].", panel=COMPARE
)
SIDE_SET_HELP = (
    "KEY=VALUE (repeatable): an engine-side setting of side {side}. A dotted key overrides the "
    "checkpoint's config (text_config.use_bidirectional_attention=null); a plain key is a vLLM "
    "engine argument (dtype=bfloat16, attention_backend=..., mm_processor_kwargs={{...}}). "
    "What differs between the sides is the declared factor; nothing else may."
)
ASetOpt = option(list[str] | None, "--a-set", help=SIDE_SET_HELP.format(side="A"), panel=COMPARE)
BSetOpt = option(list[str] | None, "--b-set", help=SIDE_SET_HELP.format(side="B"), panel=COMPARE)
SidesOpt = option(
    Path | None,
    "--sides",
    help="TOML file with tables [a] and [b] (variant, set): the two sides of the A/B "
    "(configs/factors/); --a, --b, --a-set and --b-set win over it.",
    panel=COMPARE,
)
FactorOpt = option(
    list[str] | None,
    "--factor",
    help="What may differ between two servers or two run folders (repeatable): vllm (the "
    "installation: vLLM, torch, transformers) or a setting such as dtype. Everything "
    "else must match.",
    panel=COMPARE,
)
EnginesOpt = option(
    str,
    "--engines",
    help="auto: one engine with an in-place switch when both are pre/post and its "
    "self-check passes, else two; one; two (a fresh engine per variant).",
    panel=COMPARE,
)
EndpointAOpt = option(str | None, "--endpoint-a", help="Server running variant A.", panel=COMPARE)
EndpointBOpt = option(str | None, "--endpoint-b", help="Server running variant B.", panel=COMPARE)
AllowMismatchOpt = option(
    bool,
    "--allow-mismatch",
    help="Compare runs whose settings differ in more than the variant (differences listed).",
    panel=COMPARE,
)
SharedOnlyOpt = option(
    bool,
    "--shared-only",
    help="Compare only the samples present in both runs (the others are listed).",
    panel=COMPARE,
)
BootstrapSeedOpt = option(int, "--bootstrap-seed", help="Bootstrap seed.", panel=COMPARE)
ResamplesOpt = option(int, "--resamples", min=100, help="Bootstrap resamples.", panel=COMPARE)


# --- groups: each option once, with the config key(s) it sets ------------------------------


def _as_tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values else None


def split_endpoints(values: list[str] | None) -> tuple[str, ...] | None:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``; None when none given."""
    if not values:
        return None
    return tuple(part.strip() for v in values for part in v.split(",") if part.strip())


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Opt:
    """One option: the command parameter, its Typer declaration and the config keys it sets."""

    name: str
    annotation: Any
    keys: tuple[str, ...] = ()
    to_config: Callable[[Any], Any] = _same
    default: Any = None  # None: not given, so the config file or the defaults decide


def engine_arg_overrides(engine_arg: list[str] | None) -> dict[str, Any]:
    """``--engine-arg`` values as dotted config keys, in the one settings grammar: a key naming
    one of our engine settings sets that setting (``dtype=float16`` and ``enforce-eager=true``
    mean ``--dtype float16`` and ``--enforce-eager`` in every command), a dotted key overrides
    the checkpoint's config, the rest are passed to vLLM."""
    from screenspot_eval.backends.overrides import parse_settings
    from screenspot_eval.backends.sides import engine_setting_paths

    return engine_setting_paths(parse_settings(engine_arg, "--engine-arg"))


CONFIG_FILE = (Opt("config", ConfigOpt),)
OUT = (Opt("out", OutDirOpt, ("out",), lambda v: str(v)),)
MODEL = (
    Opt("model", ModelOpt, ("engine.model",)),
    Opt("revision", RevisionOpt, ("engine.revision",)),
    Opt("adapter", AdapterOpt, ("engine.adapter",)),
    Opt("preset", PresetOpt, ("engine.preset",)),
)
VARIANT = (Opt("norm", NormOpt, ("engine.norm",)),)
ENGINE = (
    Opt("max_soft_tokens", MaxSoftTokensOpt, ("engine.max_soft_tokens",)),
    Opt("dtype", DtypeOpt, ("engine.dtype",)),
    Opt("seed", SeedOpt, ("engine.seed", "sampling.seed")),
    Opt("max_model_len", MaxModelLenOpt, ("engine.max_model_len",)),
    Opt("max_num_seqs", MaxNumSeqsOpt, ("engine.max_num_seqs",)),
    Opt("gpu_memory_utilization", GpuMemOpt, ("engine.gpu_memory_utilization",)),
    Opt("tensor_parallel_size", TensorParallelOpt, ("engine.tensor_parallel_size",)),
    Opt("data_parallel_size", DataParallelOpt, ("engine.data_parallel_size",)),
    Opt("distributed_executor_backend", ExecutorOpt, ("engine.distributed_executor_backend",)),
    Opt("enforce_eager", EnforceEagerOpt, ("engine.enforce_eager",)),
    Opt("batch_invariant", BatchInvariantOpt, ("engine.batch_invariant",)),
    Opt("engine_core", EngineCoreOpt, ("engine.engine_core",)),
    Opt("allow_untested_vllm", AllowUntestedVllmOpt, ("engine.allow_untested_vllm",)),
    Opt("engine_arg", EngineArgOpt),  # expanded by engine_arg_overrides
)
DATA_OPTIONS = (
    Opt("data", DataOpt, ("data.source",)),
    Opt("data_revision", DataRevisionOpt, ("data.revision",)),
    Opt("layout", LayoutOpt, ("data.layout",)),
    Opt("strict", StrictOpt, ("data.strict",)),
    Opt("group", GroupOpt, ("data.selection.groups",), _as_tuple),
    Opt("application", ApplicationOpt, ("data.selection.applications",), _as_tuple),
    Opt("platform", PlatformOpt, ("data.selection.platforms",), _as_tuple),
    Opt("ui_type", UiTypeOpt, ("data.selection.ui_types",), _as_tuple),
    Opt("id", IdOpt, ("data.selection.ids",), _as_tuple),
    Opt("limit", LimitOpt, ("data.selection.limit",)),
    Opt("language", LanguageOpt, ("data.selection.language",)),
)
PROMPT_OPTIONS = (
    Opt("prompt", PromptOpt, ("prompt.template",)),
    Opt("convention", ConventionOpt, ("prompt.convention",)),
    Opt("protocol", ProtocolOpt, ("prompt.protocol",)),
    Opt("temperature", TemperatureOpt, ("sampling.temperature",)),
    Opt("max_tokens", MaxTokensOpt, ("sampling.max_tokens",)),
    Opt("structured", StructuredOpt, ("sampling.structured",)),
)
ENDPOINT = (Opt("endpoint", EndpointOpt, ("runtime.endpoints",), split_endpoints),)
CLIENT = (
    Opt("api_key", ApiKeyOpt, ("runtime.api_key",)),
    Opt("concurrency", ConcurrencyOpt, ("runtime.concurrency",)),
    Opt("image_workers", ImageWorkersOpt, ("runtime.image_workers",)),
    Opt("image_prep", ImagePrepOpt, ("runtime.image_prep",)),
    Opt("image_uuids", ImageUuidsOpt, ("runtime.image_uuids",)),
    Opt("image_transfer", ImageTransferOpt, ("runtime.image_transfer",)),
    Opt("verbose", VerboseOpt, ("runtime.verbose",)),
)
#: Everything ``run`` takes; ``compare`` and ``sweep`` take the same but the variant/endpoint.
EVAL = (*CONFIG_FILE, *OUT, *MODEL, *DATA_OPTIONS, *PROMPT_OPTIONS, *ENGINE, *CLIENT)
#: The A/B statistics of ``compare`` and ``sweep``: no config keys, the command reads them
#: (given to ``with_options`` before :data:`EVAL`, so ``--help`` lists them where they stood).
STATISTICS = (
    Opt("bootstrap_seed", BootstrapSeedOpt, default=DEFAULT_SEED),
    Opt("resamples", ResamplesOpt, default=DEFAULT_N_RESAMPLES),
    Opt("repeats", RepeatsOpt, default=1),
)


@dataclass(frozen=True)
class Given:
    """What the user typed for a command's option groups (``None``: not given; an option with
    a default, like those of :data:`STATISTICS`, holds that default)."""

    values: dict[str, Any]
    options: tuple[Opt, ...]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def overrides(self, **fixed: Any) -> dict[str, Any]:
        """The given values as dotted config keys (``fixed``: set by the command itself)."""
        dotted: dict[str, Any] = dict(fixed)
        for opt in self.options:
            value = self.values.get(opt.name)
            if value is None:
                continue
            for key in opt.keys:
                dotted[key] = opt.to_config(value)
        from_engine_arg = engine_arg_overrides(self.values.get("engine_arg"))
        clash = sorted(k for k in from_engine_arg if dotted.get(k) is not None)
        if clash:
            names = ", ".join(k.removeprefix("engine.") for k in clash)
            raise typer.BadParameter(
                f"{names} given both as an option and as --engine-arg; give it once",
                param_hint="--engine-arg",
            )
        return {**dotted, **from_engine_arg}

    def resampling(self) -> dict[str, int]:
        """The :data:`STATISTICS` bootstrap settings as the comparison functions name them."""
        return {"seed": self.values["bootstrap_seed"], "n_resamples": self.values["resamples"]}

    def resolve(
        self,
        *,
        defaults: dict[str, Any] | None = None,
        servers: tuple[str, ...] = (),
        **fixed: Any,
    ) -> RunConfig:
        """The run configuration: these values > ``--config`` file > ``defaults`` > built-ins
        (``servers``: where to ask for the model name when none is given). A command that
        starts an engine here refuses an unsupported installed vLLM now, before any data or
        engine work (:func:`~screenspot_eval.backends.vllm.compat.require_supported_vllm`)."""
        from screenspot_eval.backends.vllm.compat import require_supported_vllm
        from screenspot_eval.run.config import resolve_config

        config = resolve_config(
            self.values.get("config"), self.overrides(**fixed), defaults=defaults, servers=servers
        )
        if not (servers or config.against_servers):
            require_supported_vllm(config.engine.allow_untested_vllm)
        return config


def with_options(*groups: tuple[Opt, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of ``groups`` to a command; it receives them as ``given: Given``."""
    options = tuple(opt for group in groups for opt in group)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "given"]
        added = [
            inspect.Parameter(
                o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.annotation
            )
            for o in options
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name, o.default) for o in options}
            return command(*args, given=Given(values, options), **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper

    return decorate

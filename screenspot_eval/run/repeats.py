"""Repeats: the same variant K times, perturbing only what must not change an answer.

On a GPU, vLLM's greedy outputs can depend on batch composition, prefix caching and chunked
prefill, so two runs of the same variant may disagree on some samples: the A/A noise floor an
A/B delta must be read against. Each repeat after the first changes, and records, exactly:

- the sample order (shuffled with a recorded seed);
- the batch composition: at most ``window`` requests in flight, so the engine's running batch
  can never exceed it (1, then half of ``max_num_seqs``, then the full default, in turn); this
  varies the batch within one loaded model, where ``max_num_seqs`` itself is fixed at load;
- the prefix cache: emptied before every other repeat (``reset``), kept warm otherwise;
- at temperature > 0, the sampling seed (base seed + repeat index - 1).

Repeat 1 is a plain run. Each repeat is a resumable run of its own under ``DIR/r<i>``; K = 1
keeps today's single folder. One engine serves every repeat of a variant (and, with the
in-place switch, both variants).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from screenspot_eval.backends.base import Backend
from screenspot_eval.backends.engines import EngineHandle, start_engine
from screenspot_eval.backends.variant import Variant
from screenspot_eval.run.config import RunConfig, require_out
from screenspot_eval.run.session import VLLM_LOG, BackendFactory, RunResult, execute_run

DEFAULT_MAX_NUM_SEQS = 16  # what the engine window assumes when max_num_seqs is not set


class RepeatPlan(BaseModel):
    """One repeat: its index and what it perturbs; stored in the repeat's manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    k: int
    order_seed: int | None
    window: int | None
    max_batch: int | None  # the largest running batch this pass allows (in-process engine)
    prefix_cache: Literal["kept", "reset"]
    sampling_seed: int
    changed: tuple[str, ...]


def plan_repeats(config: RunConfig, k: int, *, seed_offset: int = 0) -> list[RepeatPlan]:
    """The K repeats of ``config``. ``seed_offset`` gives a second side of an A/A control its
    own sampling draws (at temperature > 0), so the control measures noise, not one draw twice."""
    if k < 1:
        raise ValueError("repeats must be at least 1")
    seqs = config.engine.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    default_window = config.runtime.window or 2 * seqs
    cycle = (1, max(1, seqs // 2), default_window)
    sampled = config.sampling.temperature > 0
    plans = []
    for index in range(1, k + 1):
        first = index == 1
        window = default_window if first else cycle[(index - 2) % len(cycle)]
        order_seed = None if first else config.sampling.seed * 1000 + index
        prefix: Literal["kept", "reset"] = "reset" if index % 2 == 0 else "kept"
        sampling_seed = config.sampling.seed + (seed_offset + index - 1 if sampled else 0)
        changed = []
        if order_seed is not None:
            changed.append(f"order shuffled (seed {order_seed})")
        if window != default_window:
            changed.append(f"at most {window} request(s) in flight")
        if prefix == "reset":
            changed.append("prefix cache emptied first")
        if sampling_seed != config.sampling.seed:
            changed.append(f"sampling seed {sampling_seed}")
        plans.append(
            RepeatPlan(
                index=index,
                k=k,
                order_seed=order_seed,
                window=window,
                max_batch=min(window, seqs),
                prefix_cache=prefix,
                sampling_seed=sampling_seed,
                changed=tuple(changed),
            )
        )
    return plans


def repeat_dir(side_dir: Path, plan: RepeatPlan) -> Path:
    return side_dir if plan.k == 1 else side_dir / f"r{plan.index}"


def repeat_dirs(side_dir: Path) -> list[Path]:
    """The run folders of one side: ``r1..rK`` when it holds repeats, else the folder itself."""
    found = sorted(
        (p for p in side_dir.glob("r*") if p.name[1:].isdigit() and (p / "manifest.json").exists()),
        key=lambda p: int(p.name[1:]),
    )
    return found or [side_dir]


def repeat_config(config: RunConfig, plan: RepeatPlan, out: Path) -> RunConfig:
    """``config`` as repeat ``plan`` runs it into ``out``."""
    runtime = config.runtime.model_copy(
        update={
            "order_seed": plan.order_seed,
            "window": plan.window,
            "reset_prefix_cache": plan.prefix_cache == "reset",
        }
    )
    sampling = config.sampling.model_copy(update={"seed": plan.sampling_seed})
    return config.model_copy(update={"runtime": runtime, "sampling": sampling, "out": str(out)})


@dataclass(frozen=True)
class Pass:
    """One run to make: its configuration and, for a repeat, its plan."""

    config: RunConfig
    plan: RepeatPlan
    side: dict[str, Any] | None = None  # a factor A/B's side record (manifest ``side``)

    @property
    def out(self) -> Path:
        return Path(str(self.config.out))


def side_passes(config: RunConfig, side_dir: Path, k: int, *, seed_offset: int = 0) -> list[Pass]:
    plans = plan_repeats(config, k, seed_offset=seed_offset)
    return [Pass(repeat_config(config, p, repeat_dir(side_dir, p)), p) for p in plans]


def engine_starter(config: RunConfig, log_dir: Path) -> Callable[[Variant], EngineHandle]:
    """Starts an in-process engine for ``config`` running a given variant, logs in ``log_dir``."""

    def start(variant: Variant) -> EngineHandle:
        settings = config.engine.model_copy(update={"norm": variant})
        return start_engine(
            settings,
            window=config.runtime.window,
            log_file=log_dir / VLLM_LOG,
            verbose=config.runtime.verbose,
        )

    return start


@contextmanager
def shared_engine(config: RunConfig, log_dir: Path) -> Iterator[EngineHandle]:
    """One in-process engine for several passes (closed at the end); its logs in ``log_dir``."""
    engine = engine_starter(config, log_dir)(config.engine.norm)
    try:
        yield engine
    finally:
        engine.close()


def borrowing(engine: EngineHandle) -> BackendFactory:
    """A backend factory that hands each pass the shared ``engine`` with the pass's settings."""

    def factory(config: RunConfig) -> Backend:
        return engine.borrow(
            window=config.runtime.window,
            reset_prefix_cache=config.runtime.reset_prefix_cache,
        )

    return factory


def run_passes(
    passes: list[Pass], *, backend_factory: BackendFactory | None = None, **kwargs: Any
) -> list[RunResult]:
    """Each pass as a resumable run (``kwargs``: restart, quiet, resume_command)."""
    extra: dict[str, Any] = {} if backend_factory is None else {"backend_factory": backend_factory}
    return [
        execute_run(
            p.config,
            p.out,
            repeat=p.plan.model_dump(mode="json"),
            side=p.side,
            **extra,
            **kwargs,
        )
        for p in passes
    ]


def run_side(passes: list[Pass], log_dir: Path, **kwargs: Any) -> list[RunResult]:
    """All passes of one side; in-process passes share one engine."""
    config = passes[0].config
    if config.against_servers or len(passes) == 1:
        return run_passes(passes, **kwargs)
    with shared_engine(config, log_dir) as engine:
        return run_passes(passes, backend_factory=borrowing(engine), **kwargs)


@dataclass
class RepeatsResult:
    """``run --repeats K``: the K runs and the noise-floor files written beside them."""

    out: Path
    runs: list[RunResult]
    files: dict[str, Path]
    headline: str


def run_repeats(
    config: RunConfig,
    k: int,
    *,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
) -> RepeatsResult:
    """``screenspot-eval run --repeats K``: K repeats of one variant into ``OUT/r1..rK``, then
    the within-variant noise floor (flips, accuracy spread) overall and per slice."""
    from screenspot_eval.report.repeats import write_noise_floor

    out = Path(str(config.out))
    passes = side_passes(config, out, k)
    kwargs = {"restart": restart, "quiet": quiet, "resume_command": resume_command}
    runs = run_side(passes, out, **kwargs) if k > 1 else run_passes(passes, **kwargs)
    files, headline = write_noise_floor(out, [r.out for r in runs], label=config.engine.norm)
    return RepeatsResult(out=out, runs=runs, files=files, headline=headline)


def evaluate(
    config: RunConfig,
    *,
    repeats: int = 1,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
) -> RunResult | RepeatsResult:
    """``screenspot-eval run [--repeats K]``: one run, or K repeats with their noise floor."""
    from screenspot_eval.run.session import evaluate as evaluate_once

    kwargs = {"restart": restart, "quiet": quiet, "resume_command": resume_command}
    if repeats == 1:
        return evaluate_once(config, **kwargs)
    require_out(config)
    return run_repeats(config, repeats, **kwargs)

"""One run end to end: load and select data, check resume, start the backend, write records.

The order matters for trust: the data and the configuration are checked against the folder's
manifest before any model is loaded, and the engine's own embedder report is checked before
any sample runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from screenspot_eval.adapters.base import ImageBudget
from screenspot_eval.backends.base import Backend, BackendError
from screenspot_eval.backends.engines import EngineSettings, start_engine
from screenspot_eval.backends.provenance import check_batch_invariance, check_same_engine
from screenspot_eval.backends.variant import VariantMismatchError, check_variant
from screenspot_eval.data.errors import Exclusion
from screenspot_eval.data.fingerprint import diff_fingerprints, fingerprint_dataset
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.select import select_samples
from screenspot_eval.data.validate import LoadedDataset, open_dataset
from screenspot_eval.errors import RunAborted, UserError
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.prompts import PromptTemplate, load_template
from screenspot_eval.protocol.zoom import parse_protocol
from screenspot_eval.report.run_exports import write_run_exports
from screenspot_eval.run.config import RunConfig, diff_settings, require_out, with_defaults
from screenspot_eval.run.family import LEGACY_ADAPTER, check_engine_family, run_adapter
from screenspot_eval.run.family import image_budget as family_budget
from screenspot_eval.run.grading import convention_warning
from screenspot_eval.run.guard import FailureGuard
from screenspot_eval.run.images import ImagePlan, plan_images
from screenspot_eval.run.pipeline import PipelineSpec, evaluate_samples
from screenspot_eval.run.steps import evaluate_protocol
from screenspot_eval.store.manifest import (
    MANIFEST_VERSION,
    Counts,
    DatasetEntry,
    Manifest,
    Repair,
    RunStatus,
    Session,
    environment,
    utc_now,
)
from screenspot_eval.store.records import PredictionRecord
from screenspot_eval.store.run_dir import RepairReport, RunDir
from screenspot_eval.store.steps import StepLog, finished_steps

BackendFactory = Callable[[RunConfig], Backend]
VLLM_LOG = "vllm.log"  # vLLM's own logs and its processes' output, beside the records


class RunRefusedError(UserError, RuntimeError):
    """The folder holds a run that this configuration or data cannot continue."""


class RunAbortedError(RunAborted, RuntimeError):
    """The run stopped early; everything finished is on disk and ``resume`` says how to go on."""


@dataclass
class RunResult:
    out: Path
    records: list[PredictionRecord]
    manifest: Manifest
    exports: dict[str, Path]


def default_backend(config: RunConfig) -> Backend:
    """In-process vLLM engine, or the HTTP backend when endpoints are configured."""
    runtime = config.runtime
    if runtime.endpoints:
        from screenspot_eval.backends.http.backend import HttpBackend, HttpSettings

        return HttpBackend(
            HttpSettings(
                endpoints=runtime.endpoints,
                api_key=runtime.api_key,
                concurrency_per_endpoint=runtime.concurrency,
                timeout_s=runtime.request_timeout_s,
                max_retries=runtime.max_retries,
                image_transfer=runtime.image_transfer,
            )
        )
    return start_engine(
        config.engine,
        window=config.runtime.window,
        log_file=Path(config.out) / VLLM_LOG if config.out else None,
        verbose=config.runtime.verbose,
    )


def say(quiet: bool, line: str) -> None:
    """The tool's own progress lines, on stderr beside the progress bar (stdout: results)."""
    if not quiet:
        print(line, file=sys.stderr, flush=True)


def _backend_note(config: RunConfig, out: Path) -> str:
    if config.against_servers:
        unused = config.unused_engine_settings()
        note = f" (the servers' own {', '.join(unused)} apply)" if unused else ""
        return f"evaluating against {', '.join(config.runtime.endpoints)}{note}"
    where = "the terminal and " if config.runtime.verbose else ""
    return f"starting vLLM with {config.engine.model}; its logs go to {where}{out / VLLM_LOG}"


def image_budget(engine: EngineSettings) -> int:
    """The image budget's value (Gemma 4: soft tokens; Qwen-VL: max_pixels), see
    :func:`screenspot_eval.run.family.image_budget`."""
    return family_budget(engine).value


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C: finished records stay, the engine is shut down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _content_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def _dataset_entry(data: LoadedDataset, files: dict[str, str]) -> DatasetEntry:
    return DatasetEntry(
        source=data.source,
        root=str(data.root),
        revision=data.revision,
        annotation_files=data.annotation_files,
        content_hash=_content_hash(files),
        files=files,
    )


def check_resumable(
    old: Manifest, config: RunConfig, template: PromptTemplate, files: dict[str, str]
) -> None:
    """The one rule for whether a folder resumes: the outcome settings it recorded, each
    setting added since then at its default (which keeps the behaviour the run had), equal
    those asked for, prompt template included; and its dataset files are unchanged. Anything
    else is refused with every difference named."""
    asked = config.outcome_settings()
    settings = {**old.outcome_settings}
    if "adapter" not in settings.get("engine", {"adapter": None}):  # recorded before adapters
        settings["engine"] = {**settings["engine"], "adapter": LEGACY_ADAPTER}
    recorded = {**with_defaults(settings, asked), "prompt_hash": old.prompt_hash}
    differences = diff_settings(recorded, {**asked, "prompt_hash": template.content_hash})
    if differences:
        lines = "\n  ".join(differences)
        raise RunRefusedError(
            "this folder holds a run with a different configuration:\n  "
            f"{lines}\nuse --restart to start it over, or choose another --out"
        )
    drift = diff_fingerprints(old.dataset.files, files)
    if not drift.is_empty:
        raise RunRefusedError(
            f"the dataset changed since this run started: {drift.describe()}\n"
            "use --restart to start over on the new data, or restore the recorded files"
        )


def _counts(selected: list[Sample], records: list[PredictionRecord]) -> Counts:
    outcomes = Counter(r.outcome.value for r in records)
    return Counts(
        selected=len(selected),
        recorded=len(records),
        missing=len({s.id for s in selected} - {r.id for r in records}),
        outcomes=dict(sorted(outcomes.items())),
    )


def open_selection(config: RunConfig) -> tuple[LoadedDataset, list[Sample], list[Exclusion]]:
    """The configured dataset, opened and checked as configured, the samples its selection
    keeps, and what the selection left out (each with its reason)."""
    data = open_dataset(
        config.data.source,
        config.data.revision,
        strict=config.data.strict,
        check_images=config.data.check_images,
        layout=config.data.layout,
    )
    selected, exclusions = select_samples(data.samples, config.data.selection)
    return data, selected, exclusions


@dataclass(frozen=True)
class RunInputs:
    """What a run reads before it touches its folder: the config, the prompt template, the
    dataset, the selection, the files' fingerprints and the image budget."""

    config: RunConfig
    template: PromptTemplate
    data: LoadedDataset
    selected: list[Sample]
    exclusions: list[Exclusion]
    files: dict[str, str]
    budget: ImageBudget

    @classmethod
    def load(cls, config: RunConfig) -> RunInputs:
        adapter = run_adapter(config.engine)
        engine = config.engine.model_copy(update={"adapter": adapter.name})
        config = config.model_copy(update={"engine": engine})
        adapter.check_variant(engine.norm)
        data, selected, selection_exclusions = open_selection(config)
        return cls(
            config=config,
            template=load_template(config.prompt.template),
            data=data,
            selected=selected,
            exclusions=[*data.exclusions, *selection_exclusions],
            files=fingerprint_dataset(data.root, selected),
            budget=family_budget(config.engine),
        )

    @property
    def convention(self) -> CoordinateConvention:
        return self.config.prompt.convention or self.template.convention

    def manifest_settings(self, records: list[PredictionRecord], **recorded: Any) -> dict[str, Any]:
        """The manifest fields this session writes (``recorded``: resume_command, repeat, side)."""
        config, template = self.config, self.template
        return {
            "manifest_version": MANIFEST_VERSION,
            "status": "running",
            "config": config.to_record(),
            "config_fingerprint": config.fingerprint(template.content_hash),
            "outcome_settings": config.outcome_settings(),
            "prompt": template.to_record(),
            "prompt_hash": template.content_hash,
            "convention": self.convention,
            "image_budget": self.budget.value,
            "model_family": self.budget.to_record(),
            "structured_decoding": config.sampling.structured,
            "requested_variant": config.engine.norm,
            "dataset": _dataset_entry(self.data, self.files),
            "exclusions": list(self.exclusions),
            "environment": environment(),
            "counts": _counts(self.selected, records),
            "error": None,
            **recorded,
        }


def execute_run(
    config: RunConfig,
    out: Path,
    *,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
    backend_factory: BackendFactory = default_backend,
    repeat: dict[str, Any] | None = None,
    side: dict[str, Any] | None = None,
) -> RunResult:
    """Evaluate the configured samples into ``out``, resuming what is already there.

    ``repeat``: for one pass of ``--repeats``, what it is and what it perturbed; ``side``: for
    one side of a factor A/B, its settings and their in-engine readings (both recorded)."""
    inputs = RunInputs.load(config)
    run = RunDir(out)
    opened = OpenedBackend()
    started: tuple[Manifest, Session] | None = None
    try:
        with sigterm_as_interrupt(), run:  # from here on, SIGTERM is handled as Ctrl-C is
            old = None if restart else run.read_manifest()
            if restart:
                run.reset()
            if old is not None:
                check_resumable(old, inputs.config, inputs.template, inputs.files)
            records, repair = run.read_records(repair=True)
            done = {r.id for r in records}
            todo = [s for s in inputs.selected if s.id not in done]
            if config.runtime.order_seed is not None:  # a repeat: the order must not matter
                random.Random(config.runtime.order_seed).shuffle(todo)
            settings = inputs.manifest_settings(
                records, resume_command=resume_command, repeat=repeat, side=side
            )
            manifest, session = started = _open_session(run, old, settings, records, repair)
            run.write_manifest(manifest)
            closing_interrupted = bool(todo) and _run_backend(
                inputs, run, manifest, session, todo, quiet, backend_factory, opened
            )
            records, exports = _finish_run(run, manifest, session, inputs.selected)
            warning = convention_warning(records)
            if warning:
                say(False, f"warning: {warning}")  # shown even with --quiet
            run.release()  # before the result: a lock left here would be this process's
            if closing_interrupted:
                raise RunAbortedError(
                    "interrupted while the engine shut down, after the last sample: every "
                    f"record is saved and the exports are written in {out}",
                    None,
                    interrupted=True,
                )
            return RunResult(out=out, records=records, manifest=manifest, exports=exports)
    except KeyboardInterrupt as exc:  # between two steps (each handles its own) or in the lock
        opened.close()
        if started is None:  # this session has written nothing yet
            raise
        raise _interrupted_between_steps(run, *started) from exc


def _open_session(
    run: RunDir,
    old: Manifest | None,
    settings: dict[str, Any],
    records: list[PredictionRecord],
    repair: RepairReport,
) -> tuple[Manifest, Session]:
    """The manifest this session writes, with the session appended; a resumed run keeps its
    start, its earlier sessions and what the engine reported."""
    if old is None:
        manifest = Manifest(started_at=utc_now(), **settings)
    else:
        manifest = Manifest.model_validate({**old.model_dump(), **settings})
    session = Session(
        started_at=utc_now(),
        resumed_from=len(records),
        repaired=Repair(
            truncated_bytes=repair.truncated_bytes, retried_failed=repair.dropped_failed
        ),
        lock=run.lock_note,
    )
    manifest.sessions.append(session)
    return manifest, session


def _interrupted_between_steps(
    run: RunDir, manifest: Manifest, session: Session
) -> RunAbortedError:
    """A Ctrl-C or SIGTERM that no step caught (it came between two of them): what it means
    depends only on what is on disk, which the manifest's status says."""
    if manifest.status == "complete":
        return RunAbortedError(
            f"interrupted after the last sample: every record is saved and the exports are "
            f"written in {run.path}",
            None,
            interrupted=True,
        )
    if manifest.status == "running":
        _record_stop(run, manifest, session, session.samples or 0, "interrupted", "interrupted")
    return RunAbortedError(
        f"run stopped (interrupted); every finished sample is saved in {run.predictions}",
        manifest.resume_command,
        interrupted=True,
    )


def _finish_run(
    run: RunDir, manifest: Manifest, session: Session, selected: list[Sample]
) -> tuple[list[PredictionRecord], dict[str, Path]]:
    """Mark the run complete and write its exports. A Ctrl-C or SIGTERM here (after the last
    sample) is recorded, and the same command writes them again without running a sample."""
    try:
        records, _ = run.read_records()
        by_id = {r.id: r for r in records}
        records = [by_id[s.id] for s in selected if s.id in by_id]
        manifest.status = "complete"
        manifest.ended_at = session.ended_at = utc_now()
        manifest.counts = _counts(selected, records)
        run.write_manifest(manifest)
        return records, write_run_exports(run.path, records, manifest)
    except KeyboardInterrupt as exc:
        reason = "interrupted while writing the exports, after the last sample"
        manifest.status = "interrupted"
        manifest.error = session.error = reason
        run.write_manifest(manifest)
        raise RunAbortedError(
            f"run stopped ({reason}); every record is saved in {run.predictions}; the resume "
            "command writes the exports without running any sample again",
            manifest.resume_command,
            interrupted=True,
        ) from exc


class OpenedBackend:
    """The backend this session started, shut down exactly once whatever moment a Ctrl-C or
    SIGTERM lands: in the run's own ``finally``, or by the guard around it."""

    def __init__(self) -> None:
        self.backend: Backend | None = None
        self.closed = False

    def close(self) -> bool:
        """Shut the backend down; True when a Ctrl-C or SIGTERM arrived meanwhile. That is
        noted, not raised, and the shutdown is finished (a second one abandons it): every
        record is on disk by then, and the exports still get written."""
        interrupted = False
        for _ in range(2):
            if self.backend is None or self.closed:
                return interrupted
            try:
                self.backend.close()
                self.closed = True
            except KeyboardInterrupt:
                interrupted = True
        return interrupted


def _run_backend(
    inputs: RunInputs,
    run: RunDir,
    manifest: Manifest,
    session: Session,
    todo: list[Sample],
    quiet: bool,
    backend_factory: BackendFactory,
    opened: OpenedBackend,
) -> bool:
    """Start the backend, verify it, evaluate ``todo`` into ``run``; True when the engine's
    shutdown, after the last sample, was interrupted (see :meth:`OpenedBackend.close`)."""
    config, budget = inputs.config, inputs.budget
    load_start = time.perf_counter()
    closing_interrupted = False
    bar = tqdm(total=len(todo), unit="sample", disable=True)
    correct = done = 0
    try:
        say(quiet, f"{config.engine.norm}: {_backend_note(config, run.path)}")
        try:
            backend = opened.backend = backend_factory(config)
            report = backend.report
            manifest.engine_report = report.model_dump(mode="json")
            manifest.effective_variant = report.effective_variant
            check_engine_family(str(config.engine.adapter), report.model_class)
            check_variant(config.engine.norm, report)
        except VariantMismatchError as exc:
            raise VariantMismatchError(
                f"embedder check failed, nothing was evaluated: {exc}"
            ) from exc
        say(quiet, f"{config.engine.norm}: embedder verified: {report.effective_variant}")
        provenance = backend.provenance
        check_batch_invariance(config.engine.batch_invariant, provenance)
        if session.resumed_from:
            check_same_engine(manifest.engine_provenance, provenance)
        manifest.engine_provenance = provenance and provenance.model_dump(mode="json")
        if config.engine.batch_invariant:
            say(quiet, f"{config.engine.norm}: batch-invariant mode verified in the workers")
        session.load_s = round(time.perf_counter() - load_start, 3)
        run.write_manifest(manifest)
        spec = PipelineSpec(
            template=inputs.template,
            convention=inputs.convention,
            language=config.data.selection.language,
            sampling=config.sampling,
            variant=report.effective_variant,
            image_budget=budget.value,
            sent_size=partial(run_adapter(config.engine).sent_size, budget=budget),
        )
        images = plan_images(
            backend,
            todo,
            budget=budget.value,
            hashes=manifest.dataset.files,
            prepare=config.runtime.image_prep == "auto",
            uuids=config.runtime.image_uuids,
        )
        session.images = images.to_record()  # the preparation's self-check, before any sample
        run.write_manifest(manifest)
        eval_start = time.perf_counter()
        bar = tqdm(total=len(todo), unit="sample", disable=quiet, desc=config.engine.norm)

        guard = FailureGuard()

        def on_record(record: PredictionRecord) -> None:
            nonlocal correct, done
            run.append(record)
            done += 1
            correct += record.outcome.value == "correct"
            bar.update(1)
            bar.set_postfix(acc=f"{correct / done:.1%}", refresh=False)
            guard.check(record)  # after the append: the record that trips it is kept

        _evaluate(inputs, run, todo, backend, spec, images, on_record)
        guard.finish(earlier_ok=session.resumed_from)
        seconds = time.perf_counter() - eval_start
        session.images = images.to_record()
        session.frontend = backend.frontend_stats()
        session.samples = done
        session.eval_s = round(seconds, 3)
        session.samples_per_s = round(done / seconds, 3) if seconds > 0 else None
        session.engine_idle_s = round(backend.idle_s, 3)
    except (BackendError, KeyboardInterrupt) as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"backend failed: {exc}"
        _record_stop(run, manifest, session, done, "interrupted", reason)
        resume = manifest.resume_command
        raise RunAbortedError(
            f"run stopped ({reason}); {done} sample(s) finished in this session are saved in "
            f"{run.predictions}{_log_note(run.path)}",
            resume,
            interrupted=isinstance(exc, KeyboardInterrupt),
        ) from exc
    except Exception as exc:
        _record_stop(run, manifest, session, done, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        try:  # the engine is shut down even when a Ctrl-C lands in these two lines
            bar.close()
            run.close()
        finally:
            closing_interrupted = opened.close()
    return closing_interrupted


def _evaluate(
    inputs: RunInputs,
    run: RunDir,
    todo: list[Sample],
    backend: Backend,
    spec: PipelineSpec,
    images: ImagePlan,
    on_record: Callable[[PredictionRecord], None],
) -> None:
    """One pass for a one-shot run; one pass per step for a multi-step protocol, resumed from
    the folder's step records (``steps.jsonl``)."""
    runtime = inputs.config.runtime
    workers = {"image_workers": runtime.image_workers, "prefetch": runtime.prefetch}
    protocol = parse_protocol(inputs.config.prompt.protocol)
    if not protocol.multi_step:
        evaluate_samples(
            todo, inputs.data.root, backend, spec, on_record=on_record, images=images, **workers
        )
        return
    log = StepLog(run.path)
    try:
        evaluate_protocol(
            todo,
            inputs.data.root,
            backend,
            spec,
            protocol,
            chains=finished_steps(log.read()),
            on_step=log.append,
            on_record=on_record,
            images=images,
            **workers,
        )
    finally:
        log.close()


def _log_note(out: Path) -> str:
    """Where vLLM's own account of the failure is, when this run has one."""
    log = out / VLLM_LOG
    return f"; vLLM's log: {log}" if log.exists() else ""


def _record_stop(
    run: RunDir,
    manifest: Manifest,
    session: Session,
    done: int,
    status: RunStatus,
    reason: str,
) -> None:
    """Write down why the run stopped and what is on disk now."""
    run.close()
    records, _ = run.read_records()
    session.samples = done
    session.ended_at = utc_now()
    session.error = reason
    selected = manifest.counts.selected
    manifest.counts = manifest.counts.model_copy(
        update={"recorded": len(records), "missing": selected - len(records)}
    )
    manifest.status = status
    manifest.error = reason
    run.write_manifest(manifest)


def evaluate(
    config: RunConfig,
    *,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
) -> RunResult:
    """``screenspot-eval run``: evaluate ``config`` into its results folder (``config.out``)."""
    return execute_run(
        config, require_out(config), restart=restart, quiet=quiet, resume_command=resume_command
    )

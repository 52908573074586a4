"""Shared helpers of the engine benchmarks (issue 8): data, model, environment, timing, output.

Not a benchmark itself. Every script that imports this sets the CPU defaults below, builds (or
reuses) the tiny model and synthetic releases under ``bench/out/`` and writes its figures to
``bench/out/<name>.json``.

Smoke mode (CI), the same for every script (:func:`parse_args`): ``--smoke`` or
``SCREENSPOT_BENCH_SMOKE=1`` sets the script's sizes to tiny ones, whatever the command line
says (a few samples, screenshots at most 640 px wide, one repeat), starts every
engine and server eager (``--enforce-eager``: no torch.compile), marks the figures
``"smoke": true`` and writes everything (model, data, runs, figures) to ``bench/out/smoke/``, or
to ``SCREENSPOT_BENCH_OUT`` when set (that variable moves the output of any run). Smoke figures
are computed exactly like full ones; at that size their values mean nothing.

Machines are shared: a measurement records the load average and the CPU time that processes
outside its own process tree used while it ran (``foreign_cpu_s``), so a disturbed figure shows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: Where figures, runs, the model and data go by default (see :func:`out_dir`).
OUT = ROOT / "bench" / "out"
CLI = str(Path(sys.executable).parent / "screenspot-eval")

ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
#: Engine and decoding options every benchmark run uses (fp32: greedy answers do not depend on
#: batch composition, so both sides of a comparison must produce the same answers).
ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "2048"]
DECODING_ARGS = ["--structured", "--max-tokens", "48", "--quiet"]
#: Share of the wall time that other processes may use before a figure counts as disturbed.
DISTURBED_SHARE = 0.10

#: Smoke mode: set to 1 by ``--smoke`` (and inherited by every child process), or by CI.
SMOKE_ENV = "SCREENSPOT_BENCH_SMOKE"
#: Output folder for everything a script writes (default: :data:`OUT`, smoke: ``OUT/smoke``).
OUT_ENV = "SCREENSPOT_BENCH_OUT"
#: The sizes smoke defaults use: samples of a run and the screenshots' width.
SMOKE_SAMPLES = 4
SMOKE_MAX_WIDTH = 640


def smoke() -> bool:
    """Whether this process runs at smoke size (``--smoke`` or ``SCREENSPOT_BENCH_SMOKE=1``)."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0")


def parse_args(parser: argparse.ArgumentParser, **smoke_sizes: Any) -> argparse.Namespace:
    """Parse a script's arguments, with the shared ``--smoke`` flag.

    In smoke mode ``smoke_sizes`` replace the script's size arguments, given or not (so a
    documented command such as ``--repeats 3`` runs once), and ``SCREENSPOT_BENCH_SMOKE=1`` is
    exported, so the script's child processes agree.
    """
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"CI size: a few samples, small screenshots, one repeat, eager engines, output to "
        f"${OUT_ENV} or bench/out/smoke (also: {SMOKE_ENV}=1)",
    )
    args = parser.parse_args()
    if args.smoke or smoke():
        os.environ[SMOKE_ENV] = "1"
        for key, value in smoke_sizes.items():
            setattr(args, key, value)
    return args


def out_dir() -> Path:
    """Where this run writes: ``SCREENSPOT_BENCH_OUT``, else ``bench/out`` (``bench/out/smoke``
    in smoke mode, so a smoke run never overwrites full-size figures)."""
    custom = os.environ.get(OUT_ENV, "").strip()
    if custom:
        return Path(custom).resolve()
    return OUT / "smoke" if smoke() else OUT


def engine_args() -> list[str]:
    """:data:`ENGINE_ARGS`, plus ``--enforce-eager`` in smoke mode."""
    return [*ENGINE_ARGS, "--enforce-eager"] if smoke() else list(ENGINE_ARGS)


def llm_kwargs() -> dict[str, Any]:
    """Extra ``vllm.LLM`` arguments of a script that builds its own engine (smoke: eager)."""
    return {"enforce_eager": True} if smoke() else {}


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (as recorded in figures)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def set_env_defaults() -> dict[str, str]:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the default multiprocess engine
    return {key: os.environ[key] for key in ENV_DEFAULTS}


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "vllm": version("vllm-cpu") or version("vllm"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "pillow": version("pillow"),
    }


def ensure_tiny_model() -> Path:
    """The tiny random Gemma 4 (deterministic for its seed), built once into bench/out."""
    path = out_dir() / "tiny-gemma4"
    if not (path / "config.json").is_file():
        subprocess.run([CLI, "tiny-model", str(path)], check=True, capture_output=True)
    return path


def ensure_release(name: str, n: int, **synth: Any) -> tuple[Path, dict[str, Any]]:
    """A synthetic release in ``bench/out/data/<name>``, reused when its parameters match."""
    from screenspot_eval.data.synth import synthesize_release

    root = out_dir() / "data" / name
    params = {"n": n, "seed": 0, **synth}
    stamp = root / "bench-synth.json"
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if info.get("params") == params:
            return root, info
    if root.exists():
        import shutil

        shutil.rmtree(root)
    started = time.perf_counter()
    summary = synthesize_release(root, **params)
    seconds = time.perf_counter() - started
    images = list((root / "images").rglob("*.png"))
    info = {
        "params": params,
        "samples": summary.samples,
        "screenshots": summary.screenshots,
        "synthesis_s": round(seconds, 1),
        "disk_mb": round(sum(p.stat().st_size for p in images) / 2**20, 1),
        "resolutions": _resolution_mix(root),
    }
    stamp.write_text(json.dumps(info, indent=1))
    return root, info


def _resolution_mix(root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for path in sorted((root / "annotations").glob("*.json")):
        for record in json.loads(path.read_text()):
            if record["img_filename"] in seen:
                continue
            seen.add(record["img_filename"])
            key = "x".join(str(v) for v in record["img_size"])
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0].split("x")[0])))


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)


@dataclass
class TreeMonitor:
    """Samples the process tree of ``pid`` every ``interval`` s in a thread.

    ``peak_rss_mb``: the largest sum of RSS over the process and all its descendants (and the
    trees in ``also``) seen at one sample. ``tree_cpu_s``: CPU time of the tree (each process's last reading; a process that
    exits loses at most one interval). ``foreign_cpu_s``: busy CPU time of the whole machine
    minus the tree's and this (benchmark) process's: what other users took meanwhile.
    """

    pid: int
    interval: float = 0.1
    also: tuple[int, ...] = ()  # other trees that are part of the measurement (a server)
    peak_rss_mb: float = 0.0
    peak_processes: int = 0
    samples: int = 0
    _cpu: dict[int, float] = field(default_factory=dict)
    _cpu0: dict[int, float] = field(default_factory=dict)  # at first sight (a running server)
    _peaks: dict[int, tuple[int, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMonitor:
        self._busy0, self._self0 = busy_cpu_s(), _self_cpu_s()
        self._steal0 = getattr(psutil.cpu_times(), "steal", 0.0)
        self._wall0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        total, count = 0, 0
        others = [p for pid in self.also for p in tree(pid)]
        for proc in tree(self.pid) + others:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    total += rss
                    if rss > self._peaks.get(proc.pid, (0, ""))[0]:
                        self._peaks[proc.pid] = (rss, _role(proc))
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
                    self._cpu0.setdefault(proc.pid, self._cpu[proc.pid])
                count += 1
            except psutil.Error:
                continue
        self.samples += 1
        if total / 2**20 > self.peak_rss_mb:
            self.peak_rss_mb = total / 2**20
        self.peak_processes = max(self.peak_processes, count)

    def stop(self) -> dict[str, Any]:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = time.perf_counter() - self._wall0
        tree_cpu = sum(self._cpu[pid] - self._cpu0[pid] for pid in self._cpu)
        own = _self_cpu_s() - self._self0
        foreign = max(0.0, busy_cpu_s() - self._busy0 - tree_cpu - own)
        return {
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "peak_processes": self.peak_processes,
            "peak_rss_mb_per_process": {
                f"{pid} {role}": round(rss / 2**20, 1)
                for pid, (rss, role) in sorted(self._peaks.items(), key=lambda kv: -kv[1][0])
            },
            "rss_samples": self.samples,
            "tree_cpu_s": round(tree_cpu, 1),
            "foreign_cpu_s": round(foreign, 1),
            "steal_s": round(getattr(psutil.cpu_times(), "steal", 0.0) - self._steal0, 1),
            "foreign_cpu_share": round(foreign / wall / (os.cpu_count() or 1), 3) if wall else 0,
            "disturbed": bool(wall) and foreign / wall / (os.cpu_count() or 1) > DISTURBED_SHARE,
        }


def _role(proc: psutil.Process) -> str:
    """A short name for a process of the tree: its title (vLLM sets one) or command."""
    try:
        name = proc.name()
        cmd = proc.cmdline()
    except psutil.Error:
        return "?"
    if name and not name.startswith("python") and name != "screenspot-eval":
        return name
    return " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:3]))[:60]


def _self_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def other_engines(also: tuple[int, ...] = ()) -> list[str]:
    """Python processes outside this benchmark's tree that look like vLLM or this tool."""
    mine = {p.pid for pid in (os.getpid(), *also) for p in tree(pid)}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] in mine or "python" not in cmd:
            continue
        if any(k in cmd for k in ("vllm", "screenspot-eval", "spawn_main", "pytest")):
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


def timed_process(
    command: list[str],
    *,
    log: Path,
    interval: float = 0.1,
    env: dict[str, str] | None = None,
    also: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Run ``command`` to completion under a :class:`TreeMonitor`; raise with the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    others = other_engines(also)
    with log.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        monitor = TreeMonitor(proc.pid, interval=interval, also=also).start()
        code = proc.wait()
        wall = time.perf_counter() - started
        figures = monitor.stop()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited with {code}:\n{tail}")
    return {
        "wall_s": round(wall, 2),
        **figures,
        "loadavg_1min_before": round(load, 2),
        "other_engines_at_start": others,
        "log": rel(log),
    }


def session(run_dir: Path) -> dict[str, Any]:
    """The last session of a run folder's manifest (load_s, eval_s, engine_idle_s, ...), as JSON."""
    return _read_manifest(run_dir).session.model_dump(mode="json")


def answers(run_dir: Path) -> dict[str, str | None]:
    """sample id -> raw answer text of a run folder (the store's reading: last record wins)."""
    from screenspot_eval.store.run_dir import RunDir

    records, _ = RunDir(run_dir).read_records()
    return {record.id: record.raw_response for record in records}


def manifest(run_dir: Path) -> dict[str, Any]:
    """A run folder's whole manifest, as JSON (engine provenance, sessions, counts)."""
    return _read_manifest(run_dir).model_dump(mode="json")


def _read_manifest(run_dir: Path) -> Any:
    from screenspot_eval.store.run_dir import RunDir

    found = RunDir(run_dir).read_manifest()
    if found is None:
        raise RuntimeError(f"{run_dir} has no manifest.json")
    return found


def write_figures(name: str, figures: dict[str, Any]) -> Path:
    """Write ``<out_dir>/<name>.json``; smoke figures say ``"smoke": true`` first."""
    if smoke():
        figures = {"smoke": True, **figures}
    out = out_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    return path


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None

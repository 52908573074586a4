"""What a backend's front end spent its time on: per-stage costs and how full the engine was.

The in-process engine is driven by one thread that waits for decoded images, renders and
enqueues each request (``enqueue_chat``: chat template, image processor, hashing, hand-off to
the engine core) and collects outputs (``step``). These counters say where that thread's time
went and whether the engine had work queued beyond its running batch, which is what keeps a GPU
busy. ``engine_idle_s`` (nothing in flight) alone hides a starved engine: the engine also
starves with a few requests in flight and none queued behind them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


def image_uuid(sha256: str, budget: int | None, tag: str) -> str:
    """The id vLLM keys its caches on instead of a hash of the pixels:
    ``sha256:<file hash>/budget:<soft tokens>/<how the pixels were made>``, where the last part
    is ``file`` (the server decodes the file), ``rgb`` (the harness's RGB decode) or
    ``prepared-WxH`` (that decode resized to the processor's size)."""
    return f"sha256:{sha256}/budget:{budget if budget is not None else 'default'}/{tag}"


def retag_uuid(uuid: str, tag: str) -> str:
    """The same image's id for pixels made another way (a decode instead of the file)."""
    return f"{uuid.rsplit('/', 1)[0]}/{tag}"


@dataclass
class FrontEndStats:
    """Counters of one backend over its lifetime (all passes of a shared engine)."""

    window: int = 0
    """Requests in the engine at most (queued + running)."""
    max_num_seqs: int = 0
    """Requests the engine runs in one batch; beyond that they wait in its queue."""
    requests: int = 0
    enqueue_s: float = 0.0
    """Wall time inside ``enqueue_chat`` (render, processor, hash, hand-off), all requests."""
    wait_s: float = 0.0
    """Wall time waiting for the next decoded (and prepared) image."""
    starved_wait_s: float = 0.0
    """Of ``wait_s``: time waited while fewer than ``max_num_seqs`` requests were in flight
    (the engine could have batched more)."""
    steps: int = 0
    """``step()`` calls made while more input was to come."""
    steps_with_queue: int = 0
    """Of ``steps``: calls made with more than ``max_num_seqs`` in flight (work queued)."""
    in_flight_sum: int = 0
    stages_s: dict[str, float] = field(default_factory=dict)
    """vLLM's own per-stage multimodal timings, summed (only with
    ``enable_mm_processor_stats``): hashing, the HF processor, cache bookkeeping."""
    stage_requests: int = 0
    cpu_s: float | None = None
    """CPU seconds of the whole process tree (front end, engine core, workers) while it ran."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def waited(self, seconds: float, in_flight: int) -> None:
        self.wait_s += seconds
        if in_flight < self.max_num_seqs:
            self.starved_wait_s += seconds

    def enqueued(self, seconds: float) -> None:
        self.requests += 1
        self.enqueue_s += seconds

    def stepped(self, in_flight: int, exhausted: bool) -> None:
        if exhausted:  # the tail: nothing left to queue, so an emptying batch is expected
            return
        self.steps += 1
        self.in_flight_sum += in_flight
        if in_flight > self.max_num_seqs:
            self.steps_with_queue += 1

    def add_stages(self, per_request: dict[str, dict[str, float]]) -> None:
        with self._lock:
            for stats in per_request.values():
                self.stage_requests += 1
                for name, seconds in stats.items():
                    self.stages_s[name] = self.stages_s.get(name, 0.0) + float(seconds)

    def to_record(self) -> dict[str, Any]:
        """The JSON a run's session records (``frontend``)."""

        def per_request_ms(seconds: float, n: int) -> float | None:
            return round(1000 * seconds / n, 2) if n else None

        record: dict[str, Any] = {
            "window": self.window,
            "max_num_seqs": self.max_num_seqs,
            "requests": self.requests,
            "enqueue_s": round(self.enqueue_s, 3),
            "enqueue_ms_per_request": per_request_ms(self.enqueue_s, self.requests),
            "wait_for_images_s": round(self.wait_s, 3),
            "starved_wait_s": round(self.starved_wait_s, 3),
            "steps": self.steps,
            "steps_with_queued_work": self.steps_with_queue,
            "steps_with_queued_work_share": (
                round(self.steps_with_queue / self.steps, 4) if self.steps else None
            ),
            "mean_in_flight": round(self.in_flight_sum / self.steps, 2) if self.steps else None,
        }
        if self.cpu_s is not None:
            record["cpu_s"] = round(self.cpu_s, 2)
            record["cpu_s_per_sample"] = (
                round(self.cpu_s / self.requests, 4) if self.requests else None
            )
        if self.stage_requests:
            record["vllm_stages_ms_per_request"] = {
                name.removesuffix("_secs"): per_request_ms(seconds, self.stage_requests)
                for name, seconds in sorted(self.stages_s.items())
            }
        return record


@dataclass
class ImageStats:
    """The harness's own image work (decode pool threads), and which path each image took."""

    first_stage: str = "decode"  # "inspect" where files are only checked (a server decodes)
    images: int = 0
    decode_s: float = 0.0
    decode_cpu_s: float = 0.0
    prepare_s: float = 0.0
    prepare_cpu_s: float = 0.0
    paths: dict[str, int] = field(default_factory=dict)
    samples_by_path: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def loaded(self, decode: tuple[float, float], prepare: tuple[float, float]) -> None:
        with self._lock:
            self.images += 1
            self.decode_s += decode[0]
            self.decode_cpu_s += decode[1]
            self.prepare_s += prepare[0]
            self.prepare_cpu_s += prepare[1]

    def took(self, sample_id: str, path: str | None) -> None:
        name = path or "unknown"
        self.paths[name] = self.paths.get(name, 0) + 1
        self.samples_by_path.setdefault(name, []).append(sample_id)

    def to_record(self) -> dict[str, Any]:
        """Counts per path; the sample ids of every path but the most common one."""
        record: dict[str, Any] = {"paths": dict(sorted(self.paths.items()))}
        if len(self.paths) > 1:
            common = max(self.paths, key=lambda name: self.paths[name])
            record["samples_by_path"] = {
                name: sorted(ids) for name, ids in self.samples_by_path.items() if name != common
            }
        if self.images:
            n = self.images
            record.update(
                {
                    "images_loaded": n,
                    f"{self.first_stage}_s": round(self.decode_s, 3),
                    f"{self.first_stage}_cpu_s": round(self.decode_cpu_s, 3),
                    f"{self.first_stage}_ms_per_image": round(1000 * self.decode_s / n, 2),
                }
            )
            if self.first_stage == "decode":
                record.update(
                    {
                        "prepare_s": round(self.prepare_s, 3),
                        "prepare_cpu_s": round(self.prepare_cpu_s, 3),
                        "prepare_ms_per_image": round(1000 * self.prepare_s / n, 2),
                    }
                )
        return record

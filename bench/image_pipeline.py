"""Benchmark the streaming image pipeline (issue 3). Not a test: it prints figures.

    .venv/bin/python bench/image_pipeline.py [--n 200] [--hold 20] [--workers 2] [--dir DIR]
                                             [--resolution 3840x2160]

1. Peak RSS: iterating ``n`` synthetic 3840x2160 (``--resolution``) screenshots with ``iter_images`` versus
   holding ``hold`` decoded screenshots in a list (the naive loader). Each runs in a fresh
   subprocess, so ``ru_maxrss`` is that mode's own peak.
2. Speed: the same screenshots decoded by ``iter_images`` (thread pool) versus a plain
   single-threaded PIL loop. Files are read once first so both run from the page cache; each
   mode runs twice, alternating, and the best time counts. CPU time / wall time shows how much
   the decode threads really overlapped (Pillow releases the GIL while decoding).

The synthetic release is kept in ``--dir`` (default: a temporary folder) and reused if present.
Prints the figures and writes them to ``bench/out/image_pipeline.json``. Runtime on 2 cores:
about 1.5 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # bench/common.py (the script's folder is on sys.path)
import PIL
from PIL import Image

from screenspot_eval.data.images import decode_image, iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release

NAME = "image_pipeline"
RESOLUTION = (3840, 2160)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ensure_release(root: Path, n: int, resolution: tuple[int, int] = RESOLUTION) -> list[Sample]:
    if not (root / "annotations").is_dir():
        synthesize_release(root, n, seed=0, resolutions=[resolution], max_per_screenshot=1)
    samples = load_release(root).samples
    assert len({s.img_filename for s in samples}) == len(samples) == n, "one sample per screenshot"
    return samples


def child(mode: str, root: Path, hold: int, workers: int, prefetch: int) -> None:
    """One memory measurement in a fresh process; prints its peak RSS in MB."""
    samples = load_release(root, check_images=False).samples
    if mode == "stream":
        for _, image in iter_images(samples, root, workers=workers, prefetch=prefetch):
            assert isinstance(image, Image.Image)
            image.getpixel((0, 0))
    elif mode == "hold":
        held = [decode_image(s, root) for s in samples[:hold]]
        assert all(isinstance(image, Image.Image) for image in held)
    print(json.dumps({"mode": mode, "peak_rss_mb": round(peak_rss_mb(), 1)}))


def measure_rss(mode: str, root: Path, args: argparse.Namespace) -> float:
    command = [sys.executable, __file__, "--child", mode, "--dir", str(root),
               "--hold", str(args.hold), "--workers", str(args.workers),
               "--prefetch", str(args.prefetch)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss_mb"]


def plain_pil(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.load()
            if image.mode != "RGB":
                image.convert("RGB")


def pooled(samples: list[Sample], root: Path, workers: int, prefetch: int) -> None:
    for _, image in iter_images(samples, root, workers=workers, prefetch=prefetch):
        assert isinstance(image, Image.Image)


def timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--hold", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--resolution", default="x".join(map(str, RESOLUTION)))
    parser.add_argument("--child", choices=["baseline", "stream", "hold"], default=None)
    args = common.parse_args(
        parser,
        n=common.SMOKE_SAMPLES,
        hold=common.SMOKE_SAMPLES,
        resolution="1280x720",  # 2.6 MB decoded: holding a few shows in the peak RSS
    )
    width, height = (int(v) for v in args.resolution.split("x"))
    if args.child:
        child(args.child, args.dir, args.hold, args.workers, args.prefetch)
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="screenspot-bench-"))
    started = time.perf_counter()
    load_start = os.getloadavg()
    samples = ensure_release(root, args.n, (width, height))
    synth_s = time.perf_counter() - started
    paths = [root / "images" / s.img_filename for s in samples]
    megabytes = sum(p.stat().st_size for p in paths) / 2**20

    rss = {mode: measure_rss(mode, root, args) for mode in ("baseline", "stream", "hold")}

    for path in paths:  # page cache: both decoders then read from memory
        path.read_bytes()
    single, pool = [], []
    for _ in range(2):
        single.append(timed(lambda: plain_pil(paths)))
        pool.append(timed(lambda: pooled(samples, root, args.workers, args.prefetch)))
    (s_wall, s_cpu), (p_wall, p_cpu) = min(single), min(pool)

    figures = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"nproc={os.cpu_count()}, "
        f"memory={os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB, "
        f"Python {platform.python_version()}, Pillow {PIL.__version__}",
        "loadavg_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "screenshots": f"{args.n} x {width}x{height} PNG, {megabytes:.0f} MB on disk",
        "synthesis_s": round(synth_s, 1),
        "peak_rss_mb": rss,
        "stream_vs_hold_ratio": round(rss["stream"] / rss["hold"], 2),
        "stream_vs_hold_above_baseline_ratio": (
            round((rss["stream"] - rss["baseline"]) / (rss["hold"] - rss["baseline"]), 2)
            if rss["hold"] != rss["baseline"]
            else None  # smoke size: holding a few small screenshots may not show in the peak
        ),
        "single_thread_s": round(s_wall, 2),
        "single_thread_cpu_s": round(s_cpu, 2),
        "thread_pool_s": round(p_wall, 2),
        "thread_pool_cpu_s": round(p_cpu, 2),
        "speedup": round(s_wall / p_wall, 2),
        "pool_cpu_per_wall": round(p_cpu / p_wall, 2),
        "workers": args.workers,
        "prefetch": args.prefetch,
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures, indent=1))
    print(f"written: {common.write_figures(NAME, figures)}")


if __name__ == "__main__":
    main()

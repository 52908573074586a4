"""Server versus in-process throughput (issues 8, 16): `run --endpoint` against `serve`.

    .venv/bin/python bench/server_vs_inprocess.py [--n 200] [--max-num-seqs 8] [--repeats 2]
        [--transfers auto,bytes] [--api-servers N]

Both sides evaluate the same ``n`` synthetic samples (screenshots 1920x1080 up to 3840x2160)
with the tiny model, fp32, structured decoding and the same ``max_num_seqs``:

* in-process: ``screenspot-eval run`` with its own engine: decodes each PNG in its pool,
  prepares it (resize to the processor's size where self-checked), enqueues it with a uuid;
* server: ``screenspot-eval serve --data DATA`` (vLLM's serve entry point, the server may read
  the dataset folder) with the same engine settings, then ``screenspot-eval run --endpoint URL
  --image-transfer T`` (``--concurrency`` = ``max_num_seqs``). ``auto``: each request carries a
  ``file://`` URL and the server decodes the file in its media pool; ``bytes``: the client
  sends the file's own bytes as base64. Either way the server runs the processor on the full
  image (a server cannot be handed a prepared one without a decode and re-encode).

One engine at a time: in-process trial 1, then the server for all server trials, then the
remaining in-process trials. Throughput is samples / ``eval_s`` from each run's manifest (the
server's start-up is not part of it; it is recorded apart). Ratio = server throughput /
in-process throughput per transfer, median over trials (goal >= 0.95). CPU-seconds per sample:
in-process, the run's process tree during its evaluation (manifest); server, the client's and
the server's trees over the client's whole life (its start-up included). Answers must be equal
on both sides. Written to ``bench/out/server_vs_inprocess.json``. Runtime on 2 cores: about
7 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)
import httpx

NAME = "server_vs_inprocess"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], log: Path, port: int) -> tuple[subprocess.Popen, float]:
    """Start ``serve``; return once it verified its embedder and answers (with the start time)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if "serving " in log.read_text(errors="replace"):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
            return proc, time.perf_counter() - started
        time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError("serve did not become ready in 600 s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to `serve` (it stops the vLLM server group), then its own session if needed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def client_encode_cost(data: Path, count: int = 14) -> dict[str, Any]:
    """What the HTTP client pays per request before sending: ``encode_image_data_url`` (PNG,
    compress level 1, base64) of a decoded screenshot, against reading and base64-encoding the
    file as it is on disk. Median ms over ``count`` screenshots of the release's mix."""
    import base64
    import statistics

    from PIL import Image

    from screenspot_eval.backends.http.payload import encode_image_data_url

    paths = sorted((data / "images").rglob("*.png"))[:count]
    encode, raw, sizes = [], [], []
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        started = time.perf_counter()
        url = encode_image_data_url(image, "png")
        encode.append(time.perf_counter() - started)
        started = time.perf_counter()
        base64.b64encode(path.read_bytes())
        raw.append(time.perf_counter() - started)
        sizes.append(len(url) / 2**20)
    return {
        "screenshots": len(paths),
        "png_reencode_base64_ms": round(1000 * statistics.median(encode), 1),
        "file_bytes_base64_ms": round(1000 * statistics.median(raw), 1),
        "data_url_mb": round(statistics.median(sizes), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-width", type=int, default=3840)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--transfers", default="auto,bytes")
    parser.add_argument("--api-servers", default="1")
    parser.add_argument(
        "--engine-core",
        choices=("auto", "process", "inline"),
        default="auto",
        help="the in-process side's --engine-core (auto: inline on the CPU build)",
    )
    args = common.parse_args(
        parser, n=common.SMOKE_SAMPLES, max_width=common.SMOKE_MAX_WIDTH, repeats=1
    )
    transfers = [t for t in args.transfers.split(",") if t]
    env = common.set_env_defaults()
    started = time.perf_counter()
    work = common.out_dir() / NAME
    work.mkdir(parents=True, exist_ok=True)
    model = common.ensure_tiny_model()
    data, synth = common.ensure_release(
        f"mixed{args.n}-w{args.max_width}", args.n, max_width=args.max_width, target_scale=4.0
    )
    seqs = ["--max-num-seqs", str(args.max_num_seqs)]
    base = [
        common.CLI, "run", "--model", str(model), "--norm", "pre", "--data", str(data),
        *common.engine_args(), *seqs, *common.DECODING_ARGS, "--restart",
    ]  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_cmd = [
        common.CLI, "serve", "--model", str(model), "--norm", "pre", "--port", str(port),
        *common.engine_args(), *seqs, "--log", str(work / "vllm-server.log"),
        "--data", str(data), "--api-servers", args.api_servers,
    ]  # fmt: skip

    def in_process(trial: int) -> dict[str, Any]:
        out = work / "inprocess"
        command = [*base, "--out", str(out), "--engine-core", args.engine_core]
        result = common.timed_process(command, log=work / f"inproc-{trial}.log")
        return {**result, "session": common.session(out), "answers": common.answers(out)}

    def via_server(trial: int, server_pid: int, transfer: str) -> dict[str, Any]:
        out = work / f"server-{transfer}"
        command = [*base, "--out", str(out), "--endpoint", url, "--image-transfer", transfer]
        command += ["--concurrency", str(args.max_num_seqs)]
        log = work / f"server-{transfer}-{trial}.log"
        result = common.timed_process(command, log=log, also=(server_pid,))
        return {
            **result,
            "transfer": transfer,
            "session": common.session(out),
            "answers": common.answers(out),
        }

    inproc = [in_process(0)]
    server, server_start_s = start_server(serve_cmd, work / "serve.log", port)
    try:
        remote = [
            via_server(t, server.pid, transfer)
            for t in range(args.repeats)
            for transfer in transfers
        ]
    finally:
        stop_server(server)
    inproc += [in_process(t) for t in range(1, args.repeats)]

    encode_cost = client_encode_cost(data)
    reference = inproc[0]["answers"]
    equal = [sum(reference.get(k) == v for k, v in t.pop("answers").items()) for t in remote]
    for t in inproc:
        t.pop("answers")
    best_i = min(inproc, key=lambda t: t["session"]["eval_s"])
    best_s = min(remote, key=lambda t: t["session"]["eval_s"])
    n = best_i["session"]["samples"]
    import statistics

    inproc_eval = statistics.median(t["session"]["eval_s"] for t in inproc)
    per_transfer = {}
    for transfer in transfers:
        mine = [t for t in remote if t["transfer"] == transfer]
        server_eval = statistics.median(t["session"]["eval_s"] for t in mine)
        per_transfer[transfer] = {
            "server_eval_s_median": round(server_eval, 2),
            "server_over_inprocess_throughput_median": common.ratio(inproc_eval, server_eval),
            "per_trial_eval_s": [t["session"]["eval_s"] for t in mine],
            "paths": [t["session"].get("images", {}).get("paths") for t in mine],
            "client_image_ms_per_request": [
                (t["session"].get("frontend") or {}).get("image_content_ms_per_request")
                for t in mine
            ],
            "cpu_s_per_sample_client_and_server": [round(t["tree_cpu_s"] / n, 3) for t in mine],
        }
    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/server_vs_inprocess.py --n {args.n} "
        f"--max-num-seqs {args.max_num_seqs} --repeats {args.repeats} "
        f"--transfers {args.transfers} --api-servers {args.api_servers} "
        f"--engine-core {args.engine_core}",
        "data": {"root": common.rel(data), **synth},
        "settings": {
            "max_num_seqs": args.max_num_seqs,
            "concurrency": args.max_num_seqs,
            "dtype": "float32",
            "structured": True,
            "max_tokens": 48,
            "image_transfers": transfers,
        },
        "headline": {
            "per_transfer": per_transfer,
            "inprocess_eval_s_median": round(inproc_eval, 2),
            "inprocess_cpu_s_per_sample": [
                (t["session"].get("frontend") or {}).get("cpu_s_per_sample") for t in inproc
            ],
            "api_servers": args.api_servers,
            "inprocess_eval_s": best_i["session"]["eval_s"],
            "server_eval_s": best_s["session"]["eval_s"],
            "inprocess_samples_per_s": round(n / best_i["session"]["eval_s"], 3),
            "server_samples_per_s": round(n / best_s["session"]["eval_s"], 3),
            "server_over_inprocess_throughput": common.ratio(
                best_i["session"]["eval_s"], best_s["session"]["eval_s"]
            ),
            "goal": ">= 0.95",
            "inprocess_total_wall_s": best_i["wall_s"],
            "server_run_total_wall_s": best_s["wall_s"],
            "server_start_s": round(server_start_s, 1),
            "answers_equal": [f"{e}/{len(reference)}" for e in equal],
            "any_trial_disturbed": any(t["disturbed"] for t in inproc + remote),
            # CPU seconds per sample of the whole server trial (client + server processes)
            "server_trial_cpu_s_per_sample": round(best_s["tree_cpu_s"] / n, 3),
            "server_trial_cores_busy": round(best_s["tree_cpu_s"] / best_s["wall_s"], 2),
        },
        "client_encode_cost": encode_cost,
        "inprocess_trials": inproc,
        "server_trials": remote,
        "total_runtime_s": round(time.perf_counter() - started, 1),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    tag = "" if args.engine_core == "auto" else f"-{args.engine_core}"
    path = common.write_figures(NAME + tag, figures)
    print(json.dumps(figures["headline"], indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    main()

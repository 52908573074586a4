"""`screenspot-eval serve` on 127.0.0.1 and `run --endpoint` against it, in the real engine.

Same outcomes as the in-process engine for the same variant (greedy, fp32, one sequence at a
time), the variant proven through the server's own route, and a server killed mid-run: the
run stops with a clear error, keeps what finished, and a resume completes every sample once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from cli_helpers import DECODING_ARGS, ENGINE_ARGS, popen_cli, run_args, run_cli
from test_newest_transformers import newest_transformers  # noqa: F401  (a fixture)

from screenspot_eval.backends.vllm.engine_args import is_vllm_cpu_build
from screenspot_eval.errors import EXIT_BACKEND_FAILURE, EXIT_USER_ERROR

pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: Path, port: int, log: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    proc = popen_cli(
        [
            "serve",
            "--model",
            str(model),
            "--norm",
            "pre",
            "--port",
            str(port),
            *ENGINE_ARGS,
            "--log",
            str(log),
            *extra,
        ],
        env,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/screenspot/embedder", timeout=5).is_success:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"server on port {port} not ready:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """SIGTERM: `serve` shuts its server down. SIGKILL: the whole tree dies at once (a crash)."""
    if proc.poll() is not None:
        return
    if sig == signal.SIGKILL:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


#: The shared server reads the test data itself (file:// requests) and runs two API-server
#: processes (vLLM's multi-API-server mode) in front of its engine.
SERVER_EXTRA = ("--api-servers", "2")


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    extra = ("--data", str(synth_data), *SERVER_EXTRA)
    proc = start_server(tiny_model_dir, port, log, *extra)
    state = {
        "proc": proc,
        "port": port,
        "url": f"http://127.0.0.1:{port}",
        "log": log,
        "extra": extra,
    }
    yield state
    stop_server(state["proc"])


def records(path: Path) -> dict[str, dict]:
    rows = [json.loads(x) for x in (path / "predictions.jsonl").read_text().splitlines() if x]
    return {r["id"]: r for r in rows}


def test_server_reports_the_variant_from_inside_the_engine(server):
    report = httpx.get(server["url"] + "/screenspot/embedder", timeout=30).json()
    assert report["config_variant"] == "pre"
    assert report["embedders"][0]["measured_placement"] == "pre"
    assert report["model_class"].endswith("Gemma4WithSelectableEmbedder")


def test_run_against_server_equals_in_process(
    server, full_run, tiny_model_dir, synth_data, tmp_path
):
    out = tmp_path / "http"
    proc = run_cli(run_args(tiny_model_dir, synth_data, out, "--endpoint", server["url"]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["effective_variant"] == "pre"
    assert manifest["engine_report"]["config_variant"] == "pre"
    # vLLM's settings given here (dtype, max_model_len, ...) are the server's, not this run's:
    # the manifest keeps only what the client decides (the server's are its provenance)
    client = {"model", "norm", "adapter", "preset", "revision", "max_soft_tokens"}
    assert set(manifest["config"]["engine"]) <= client
    assert manifest["config"]["engine"]["adapter"] == "gemma4"  # read from the server's root
    http, local = records(out), records(full_run[0])
    assert len(local) == 48 and set(http) == set(local)
    for sample_id, record in http.items():
        assert record["endpoint"]
        assert (record["outcome"], record["raw_response"], record["image_soft_tokens"]) == (
            local[sample_id]["outcome"],
            local[sample_id]["raw_response"],
            local[sample_id]["image_soft_tokens"],
        ), sample_id
    # the server's workers report the same engine as the in-process one, field by field
    local_manifest = json.loads((full_run[0] / "manifest.json").read_text())
    served, in_process = manifest["engine_provenance"], local_manifest["engine_provenance"]
    assert served["batch_invariant"] is False and served["dtype"] == "float32"
    placement = ("engine_core", "executor_backend")  # where the workers run, not what they do
    assert served["engine_core"] == "process"  # a server: vLLM's multiprocess engine, always
    if is_vllm_cpu_build():
        assert (in_process["engine_core"], in_process["executor_backend"]) == ("inline", "uni")
    assert {k: v for k, v in served.items() if k not in placement} == {
        k: v for k, v in in_process.items() if k not in placement
    }


def test_requests_carry_file_urls_and_every_transfer_gives_the_same_answers(
    server, full_run, tiny_model_dir, synth_data, tmp_path
):
    """Against the local `serve --data`, requests carry file:// URLs (the server decodes the
    file itself); --image-transfer bytes (the file's own bytes) and reencode (the decode and
    PNG re-encode of before) give the same outcomes and raw answers as in-process."""
    local = records(full_run[0])
    assert len(local) == 48
    for transfer, path in (
        ("auto", "file-url"),
        ("bytes", "file-bytes"),
        ("reencode", "reencoded"),
    ):
        out = tmp_path / transfer
        args = run_args(tiny_model_dir, synth_data, out, "--endpoint", server["url"])
        proc = run_cli([*args, "--image-transfer", transfer])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        session = json.loads((out / "manifest.json").read_text())["sessions"][-1]
        assert session["images"]["input"] == "file" and session["images"]["uuids"] is True
        assert session["images"]["paths"] == {path: 48}, (transfer, session["images"])
        assert session["frontend"]["file_root"] == str(synth_data.resolve())
        assert set(records(out)) == set(local), transfer  # every sample recorded, once
        for sample_id, record in records(out).items():
            assert (record["outcome"], record["raw_response"]) == (
                local[sample_id]["outcome"],
                local[sample_id]["raw_response"],
            ), (transfer, sample_id)


def test_a_zoom_protocol_runs_against_the_server_with_its_crops_as_pixels(
    server, tiny_model_dir, synth_data, tmp_path
):
    """Step 1 sends the file (file:// URL), later steps the crop's pixels (the server cannot
    read a crop from the dataset): every step recorded, each view inside the one before."""
    out = tmp_path / "narrowing"
    args = run_args(tiny_model_dir, synth_data, out, "--endpoint", server["url"])
    proc = run_cli([*args, "--protocol", "iterative-narrowing", "--limit", "8"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    by_sample: dict[str, list[dict]] = {}
    for step in sorted(steps, key=lambda s: (s["id"], s["step"])):
        by_sample.setdefault(step["id"], []).append(step)
    assert len(by_sample) == 8
    for chain in by_sample.values():
        for before, after in itertools.pairwise(chain):
            assert before["outcome"] == "continued"
            (x0, y0, x1, y1), (u0, v0, u1, v1) = before["view"], after["view"]
            assert x0 <= u0 < u1 <= x1 and y0 <= v0 < v1 <= y1
    recorded = records(out)
    assert {r["calls"] for r in recorded.values()} <= {1, 2, 3}
    assert sum(r["calls"] for r in recorded.values()) == len(steps)
    paths = json.loads((out / "manifest.json").read_text())["sessions"][-1]["images"]["paths"]
    assert paths.get("file-url") == 8 and paths.get("reencoded", 0) == len(steps) - 8


def test_every_api_server_process_has_the_routes(server):
    """`--api-servers 2`: two API-server processes share the port; each answers our routes."""
    pids = set()
    for _ in range(40):
        with httpx.Client() as client:  # a fresh connection each time: the kernel spreads them
            media = client.get(server["url"] + "/screenspot/media", timeout=30).json()
            report = client.get(server["url"] + "/screenspot/embedder", timeout=30)
        assert report.status_code == 200 and report.json()["config_variant"] == "pre"
        assert media["allowed_local_media_path"] and media["root_id"]
        pids.add(media["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2, pids


def test_labelling_a_pre_server_post_is_refused(server, tiny_model_dir, synth_data, tmp_path):
    args = run_args(tiny_model_dir, synth_data, tmp_path / "wrong", "--endpoint", server["url"])
    args[args.index("--norm") + 1] = "post"
    proc = run_cli(args)
    assert proc.returncode == EXIT_BACKEND_FAILURE
    assert "embedder check failed" in proc.stderr
    assert not (tmp_path / "wrong" / "predictions.jsonl").exists()


def test_a_release_factor_between_servers_of_one_installation_is_refused_before_any_sample(
    server, tiny_model_dir, synth_data, tmp_path
):
    """`--factor vllm` reads both servers' provenance first: the same release is no factor."""
    out = tmp_path / "release"
    args = ["compare", "--a", "pre", "--b", "pre", "--endpoint-a", server["url"]]
    args += ["--endpoint-b", server["url"], "--factor", "vllm", "--data", str(synth_data)]
    proc = run_cli([*args, "--limit", "2", "--out", str(out), "--quiet"])
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "does not differ between the servers (both vLLM" in proc.stderr
    assert not list(out.rglob("predictions.jsonl"))


def test_two_installations_compare_with_the_release_as_the_declared_factor(
    server,
    newest_transformers,  # noqa: F811
    tiny_model_dir,
    synth_data,
    tmp_path,
):
    """Issue 26's A/B across installations: the shared server (this environment) against one
    served from a second installation (the newest transformers vLLM admits, first on
    PYTHONPATH); `--factor vllm` allows exactly the release's provenance differences, names
    them in the headline, and records both provenances."""
    from importlib.metadata import version

    port = free_port()
    overlay = {"PYTHONPATH": str(newest_transformers)}
    data = ("--data", str(synth_data))  # one API server: the engine's answers are what matter
    newer = start_server(tiny_model_dir, port, tmp_path / "newer.log", *data, env=overlay)
    try:
        out = tmp_path / "release"
        args = ["compare", "--a", "pre", "--b", "pre", "--endpoint-a", server["url"]]
        args += ["--endpoint-b", f"http://127.0.0.1:{port}", "--factor", "vllm"]
        args += ["--data", str(synth_data), "--limit", "4", "--out", str(out), *DECODING_ARGS]
        proc = run_cli(args)
    finally:
        stop_server(newer)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (dist,) = newest_transformers.glob("transformers-*.dist-info")
    old, new = version("transformers"), dist.name.removesuffix(".dist-info").split("-")[1]
    assert old != new
    assert f'factor transformers_version "{old}" -> "{new}": ' in proc.stdout
    assert "A/A control" not in proc.stdout
    for side, expected in (("a-pre", old), ("b-pre", new)):
        manifest = json.loads((out / side / "manifest.json").read_text())
        assert manifest["engine_provenance"]["transformers_version"] == expected
        assert manifest["counts"]["recorded"] == 4
    report = (out / "comparison.md").read_text()
    assert f'declared factor: provenance.transformers_version: "{old}" -> "{new}"' in report


def test_server_reports_its_engine_provenance_from_inside_the_workers(server):
    provenance = httpx.get(server["url"] + "/screenspot/engine", timeout=30).json()
    assert provenance["batch_invariant"] is False and provenance["workers"] == 1
    assert provenance["dtype"] == "float32" and provenance["image_token_id"] == 7


def test_asking_a_server_without_batch_invariance_for_it_is_refused(
    server, tiny_model_dir, synth_data, tmp_path
):
    """Read back from the server's workers before any sample: the server runs without it."""
    out = tmp_path / "bi"
    args = run_args(tiny_model_dir, synth_data, out, "--endpoint", server["url"])
    proc = run_cli([*args, "--batch-invariant"])
    assert proc.returncode == EXIT_BACKEND_FAILURE, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "VLLM_BATCH_INVARIANT is off" in proc.stderr
    assert not (out / "predictions.jsonl").exists() or not (out / "predictions.jsonl").read_text()


def test_serve_refuses_a_public_host(tiny_model_dir):
    proc = run_cli(["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0"])
    assert proc.returncode == 2
    assert "--allow-remote" in proc.stderr


def test_server_killed_mid_run_then_resume(server, full_run, tiny_model_dir, synth_data, tmp_path):
    """Runs last in this module: it kills the shared server and starts a new one."""
    out = tmp_path / "fault"
    args = run_args(tiny_model_dir, synth_data, out, "--endpoint", server["url"])
    run = popen_cli(args)
    predictions = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if predictions.exists() and len(predictions.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    stop_server(server["proc"], signal.SIGKILL)
    output, _ = run.communicate(timeout=300)
    assert run.returncode == EXIT_BACKEND_FAILURE, output[-3000:]
    assert "backend failed" in output and "resume with:" in output
    kept = records(out)
    assert 5 <= len(kept) < 48
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"

    server["proc"] = start_server(tiny_model_dir, server["port"], server["log"], *server["extra"])
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    lines = predictions.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 48
    local = records(full_run[0])
    for sample_id, record in records(out).items():
        assert record["outcome"] == local[sample_id]["outcome"], sample_id

"""`screenspot-eval serve`: vLLM's OpenAI-compatible server with a chosen embedder variant."""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.run_cmds import fail

SERVE = "Server"


def serve(
    model: o.ModelOpt = None,
    norm: o.NormOpt = "native",
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback by default).", rich_help_panel=SERVE)
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", rich_help_panel=SERVE)] = 8000,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a non-loopback --host (use with --api-key).",
            rich_help_panel=SERVE,
        ),
    ] = False,
    api_key: o.ApiKeyOpt = None,
    log: Annotated[
        Path | None, typer.Option(help="Write the server log here.", rich_help_panel=SERVE)
    ] = None,
    revision: o.RevisionOpt = None,
    dtype: o.DtypeOpt = "auto",
    seed: o.SeedOpt = 0,
    max_model_len: o.MaxModelLenOpt = None,
    max_num_seqs: o.MaxNumSeqsOpt = None,
    gpu_memory_utilization: o.GpuMemOpt = None,
    tensor_parallel_size: o.TensorParallelOpt = 1,
    data_parallel_size: o.DataParallelOpt = 1,
    distributed_executor_backend: o.ExecutorOpt = None,
    enforce_eager: o.EnforceEagerOpt = False,
    max_soft_tokens: o.MaxSoftTokensOpt = None,
    engine_arg: o.EngineArgOpt = None,
    print_command: Annotated[
        bool, typer.Option("--print-command", help="Print the server command and exit.")
    ] = False,
) -> None:
    """Serve a Gemma 4 model with the pre, post or native embedder and prove which one runs.

    Starts vLLM's OpenAI-compatible server (module entry point, so the CPU build works too)
    with the variant carried in the engine config, waits until it is healthy, checks the
    variant through the server's /screenspot/embedder route, prints the URL, and shuts the
    server and its engine processes down on Ctrl-C or SIGTERM. --api-key (or
    SCREENSPOT_API_KEY) protects the /v1 API. Tensor/data parallel sizes and the executor
    backend (e.g. ray) are passed to vLLM untouched.

    Example: screenspot-eval serve --model google/gemma-4-E4B-it --norm post --port 8001
    """
    from screenspot_eval.backends.http.server import endpoint_report
    from screenspot_eval.backends.variant import VariantMismatchError, check_variant
    from screenspot_eval.backends.vllm.launcher import ServerProcess, ServerStartError

    if model is None:
        fail("--model is required", code=2)
    settings = o.engine_settings(
        model=model,
        norm=norm or "native",
        revision=revision,
        dtype=dtype or "auto",
        seed=seed or 0,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size or 1,
        data_parallel_size=data_parallel_size or 1,
        distributed_executor_backend=distributed_executor_backend,
        enforce_eager=bool(enforce_eager),
        max_soft_tokens=max_soft_tokens,
        engine_arg=engine_arg,
    )
    try:
        server = ServerProcess(
            settings,
            host=host,
            port=port,
            api_key=api_key,
            log_path=log,
            allow_remote=allow_remote,
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    if print_command:
        typer.echo(shlex.join(server.command))
        return
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        typer.echo(f"starting vLLM ({settings.norm} embedder): {shlex.join(server.command)}")
        url = server.start()
        report = endpoint_report(url, api_key)
        check_variant(settings.norm, report)
        typer.echo(f"embedder verified inside the server: {report.effective_variant}")
        typer.echo(f"serving {model} at {url}/v1  (Ctrl-C to stop)", color=False)
        while not stop.wait(1.0) and server.alive():
            pass
        if not server.alive():
            fail(f"the server exited unexpectedly\n{server.log_tail()}")
    except KeyboardInterrupt:
        pass
    except (ServerStartError, VariantMismatchError) as exc:
        fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
        code = server.stop()
        typer.echo(f"server stopped (exit code {code})")

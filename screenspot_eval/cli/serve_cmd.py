"""`screenspot-eval serve`: vLLM's OpenAI-compatible server with a chosen embedder variant."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json
from screenspot_eval.cli.options import Given, with_options

SERVE = "Server"


@with_options(o.CONFIG_FILE, o.MODEL, o.VARIANT, o.ENGINE)
def serve(
    given: Given,
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
    print_command: Annotated[
        bool, typer.Option("--print-command", help="Print the server command and exit.")
    ] = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Serve a Gemma 4 model with the pre, post or native embedder and prove which one runs.

    Starts vLLM's OpenAI-compatible server (module entry point, so the CPU build works too)
    with the variant carried in the engine config, waits until it is healthy, checks the
    variant through the server's /screenspot/embedder route, prints the URL, and shuts the
    server and its engine processes down on Ctrl-C or SIGTERM. --api-key (or
    SCREENSPOT_API_KEY) protects the whole API, /screenspot/embedder included. Tensor/data
    parallel sizes and the executor backend (e.g. ray) are passed to vLLM untouched.

    Example: screenspot-eval serve --model google/gemma-4-E4B-it --norm post --port 8001
    """
    from screenspot_eval.backends.vllm.engine_args import llm_kwargs, server_command
    from screenspot_eval.backends.vllm.launcher import check_host, serve_until_stopped

    settings = given.resolve().engine
    check_host(host, allow_remote)
    command = server_command(settings, python=sys.executable, host=host, port=port)
    if print_config:
        print_json(
            {
                "engine": settings.model_dump(mode="json"),
                "llm_kwargs": llm_kwargs(settings),
                "server_command": command,
            }
        )
        return
    if print_command:
        typer.echo(shlex.join(command))
        return
    serve_until_stopped(
        settings,
        host=host,
        port=port,
        api_key=api_key,
        log_path=log,
        allow_remote=allow_remote,
        echo=lambda line: typer.echo(line, color=False),
    )

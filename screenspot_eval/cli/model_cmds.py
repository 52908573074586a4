"""Model commands: build the tiny checkpoint, verify which embedder the engine runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.backends.vllm.twins import DEFAULT_TWIN, TWINS
from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json
from screenspot_eval.cli.options import Given, with_options


def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    seed: Annotated[int, typer.Option(help="Weight initialisation seed.")] = 0,
    family: Annotated[
        str,
        typer.Option(
            help=f"Checkpoint family to twin: {', '.join(TWINS)}. Each switches on its "
            "family's published features."
        ),
    ] = DEFAULT_TWIN,
) -> None:
    """Write a tiny random Gemma 4 or Qwen-VL checkpoint (1-4 MB) that HF and vLLM load, offline.

    With --family, the twin of a published checkpoint family: its features (Gemma 4's
    per-layer embeddings, KV sharing, experts, bidirectional attention over images, the
    encoder-free 12B; Qwen2.5-VL's windowed vision attention; Qwen3-VL's DeepStack, ...) as in
    that family's config.json, every width tiny. The numbers it produces mean nothing about the
    model: it exists to smoke-test an install and to run the real engine on each family's code
    path in tests without a GPU.

    Example: screenspot-eval tiny-model models/tiny-gemma4
    """
    twin = TWINS.get(family)
    if twin is None:
        raise typer.BadParameter(
            f"unknown family {family!r}; choose one of {', '.join(TWINS)}", param_hint="--family"
        )
    path = twin.build(out_dir, seed)
    typer.echo(f"tiny {twin.model} checkpoint ({family}: {twin.summary}) written to {path}")


@with_options(o.CONFIG_FILE, o.MODEL, o.ENGINE)
def verify_embedder(
    given: Given,
    norm: Annotated[
        list[str] | None,
        typer.Option("--norm", help="Variant(s) to check (repeatable); default: all three."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the engine reports to this JSON file.")
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="Write vLLM's logs here (default: a file in the temp folder)."),
    ] = None,
    verbose: o.VerboseOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Load the model in vLLM once per variant and print what the engine really runs.

    For each variant: the embedder class, the norm placement measured by running it on a probe
    input, the width the norm acts on, and for pre the max difference against HF transformers'
    Gemma4MultimodalEmbedder (fp32). Exits 4 if any variant differs from what was asked.
    A short --max-model-len (e.g. 2048) keeps each engine small: the probe is one image.

    Example: screenspot-eval verify-embedder --model models/tiny-gemma4
    """
    from screenspot_eval.backends.variant import VARIANTS
    from screenspot_eval.backends.vllm.engine_args import llm_kwargs

    variants = norm or ["native", "pre", "post"]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise typer.BadParameter(
            f"unknown variant(s) {bad}; use {', '.join(VARIANTS)}", param_hint="--norm"
        )
    base = given.resolve().engine
    from screenspot_eval.adapters.registry import get_adapter

    for variant in variants:  # a family without embedder variants is refused before any engine
        get_adapter(str(base.adapter)).check_variant(variant)
    if print_config:
        print_json({"engine": base.model_dump(mode="json"), "llm_kwargs": llm_kwargs(base)})
        return
    from screenspot_eval.backends.vllm.verify import verify_and_report

    verify_and_report(
        base, variants, json_out=json_out, echo=typer.echo, log_file=log, verbose=bool(verbose)
    )

"""Model commands: build the tiny checkpoint, verify which embedder the engine runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o


def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    seed: Annotated[int, typer.Option(help="Weight initialisation seed.")] = 0,
) -> None:
    """Write a tiny random Gemma 4 checkpoint (about 1 MB) that HF and vLLM load, offline.

    The numbers it produces mean nothing about Gemma 4: it exists to smoke-test an install and
    to run the real engine in tests without a GPU.

    Example: screenspot-eval tiny-model models/tiny-gemma4
    """
    from screenspot_eval.backends.vllm.tiny import TinyGemma4Spec, build_tiny_gemma4

    path = build_tiny_gemma4(out_dir, TinyGemma4Spec(seed=seed))
    typer.echo(f"tiny Gemma 4 checkpoint written to {path}")


def verify_embedder(
    model: o.ModelOpt,
    norm: Annotated[
        list[str] | None,
        typer.Option("--norm", help="Variant(s) to check (repeatable); default: all three."),
    ] = None,
    revision: o.RevisionOpt = None,
    dtype: o.DtypeOpt = "auto",
    max_model_len: o.MaxModelLenOpt = 2048,
    enforce_eager: o.EnforceEagerOpt = False,
    engine_arg: o.EngineArgOpt = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the engine reports to this JSON file.")
    ] = None,
) -> None:
    """Load the model in vLLM once per variant and print what the engine really runs.

    For each variant: the embedder class, the norm placement measured by running it on a probe
    input, the width the norm acts on, and for pre the max difference against HF transformers'
    Gemma4MultimodalEmbedder (fp32). Exits 1 if any variant differs from what was asked.

    Example: screenspot-eval verify-embedder --model models/tiny-gemma4
    """
    from screenspot_eval.backends.vllm.verify import compare_probes, format_check, verify_variants

    variants = norm or ["native", "pre", "post"]
    bad = [v for v in variants if v not in ("pre", "post", "native")]
    if bad:
        raise typer.BadParameter(
            f"unknown variant(s) {bad}; use pre, post or native", param_hint="--norm"
        )
    base = o.engine_settings(
        model=model,
        norm="native",
        revision=revision,
        dtype=dtype,
        max_model_len=max_model_len,
        enforce_eager=enforce_eager,
        engine_arg=engine_arg,
    )
    results = verify_variants(base, variants, on_result=lambda r: typer.echo(format_check(r)))
    for line in compare_probes(results):
        typer.echo(line)
    if json_out is not None:
        json_out.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    failed = [r.requested for r in results if not r.ok]
    if failed:
        typer.echo(f"embedder verification FAILED for: {', '.join(failed)}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"all {len(results)} variant(s) verified inside the engine")

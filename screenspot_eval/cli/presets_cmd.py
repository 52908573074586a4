"""`presets`: the model families and the published models' presets, with their sources."""

from __future__ import annotations

import typer


def presets() -> None:
    """List the model adapters and the presets (prompt, convention, image budget, source).

    Example: screenspot-eval presets
    """
    from screenspot_eval.adapters.presets import preset_names, read_preset
    from screenspot_eval.adapters.registry import ADAPTERS
    from screenspot_eval.protocol.prompts import load_template

    typer.echo("adapters (--adapter; default: read from the checkpoint's architecture):")
    for adapter in ADAPTERS.values():
        template = load_template(adapter.default_template)
        typer.echo(
            f"  {adapter.name:<11} {adapter.description}; variants {', '.join(adapter.variants)}; "
            f"budget {adapter.budget_knob}; prompt {template.name} ({template.convention})"
        )
    typer.echo("presets (--preset):")
    for name in preset_names():
        preset = read_preset(name)
        if not preset.supported:
            typer.echo(f"  {name:<19} not servable by vLLM: {preset.reason}")
            continue
        template = load_template(preset.template)
        budget = ", ".join(f"{k} {v}" for k, v in preset.processor.items()) or "checkpoint's"
        typer.echo(
            f"  {name:<19} {preset.model} [{preset.adapter}]: prompt {template.name} "
            f"({template.convention}), budget {budget}; source: {preset.source}"
        )

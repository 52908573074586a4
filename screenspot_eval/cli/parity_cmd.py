"""`screenspot-eval parity`: which embedder variant gives HF transformers' logprobs?"""

from __future__ import annotations

import typer

from screenspot_eval.backends.overrides import parse_overrides
from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json
from screenspot_eval.cli.options import Given, split_endpoints, with_options
from screenspot_eval.errors import UserError

PARITY = "Parity"

SamplesOpt = o.option(
    int | None,
    "--samples",
    "-n",
    min=1,
    help="Score this many samples of the selection (the selection limit; default 20).",
    panel=PARITY,
)
VariantsOpt = o.option(
    list[str] | None,
    "--variant",
    help="Variants to score (repeatable or comma-separated; default pre,post,native).",
    panel=PARITY,
)
ReferenceDeviceOpt = o.option(
    str,
    "--reference-device",
    help="Where HF transformers runs the reference: cpu or cuda[:N] (it is freed before "
    "vLLM starts, so on a GPU the peak is the larger of the two, not their sum).",
    panel=PARITY,
)
ReferenceDtypeOpt = o.option(
    str,
    "--reference-dtype",
    help="dtype of the HF reference: float32, bfloat16 or float16.",
    panel=PARITY,
)
TopKOpt = o.option(
    int,
    "--top-k",
    min=1,
    help="Tokens per position the KL is computed over (HF's top-k; vLLM returns 2k).",
    panel=PARITY,
)
AnswerTokensOpt = o.option(
    int,
    "--answer-tokens",
    min=1,
    help="At most this many tokens of the reference's greedy answer are scored.",
    panel=PARITY,
)
OverrideOpt = o.option(
    list[str] | None,
    "--override",
    metavar="KEY=VALUE",
    help="Change one field of the model's config for HF and vLLM alike (repeatable; dotted "
    "keys reach sub-configs, the value is JSON or a string), e.g. "
    "text_config.use_bidirectional_attention=null. Recorded in parity.json.",
    panel=PARITY,
)
SwitchCheckOpt = o.option(
    bool,
    "--switch-check/--no-switch-check",
    help="When no variant is within the fp32 tolerance, rerun HF and vLLM with each "
    "attention switch the config sets (use_bidirectional_attention) null, to name one that "
    "vLLM ignores (costs one more reference load and one more engine).",
    panel=PARITY,
)

#: Of the run options, the ones that mean something here (no sampling, no servers).
PROMPT_ONLY = tuple(opt for opt in o.PROMPT_OPTIONS if opt.name == "prompt")
LOCAL_RUNTIME = tuple(opt for opt in o.CLIENT if opt.name in ("image_workers", "verbose"))


@with_options(o.CONFIG_FILE, o.OUT, o.MODEL, o.DATA_OPTIONS, PROMPT_ONLY, o.ENGINE, LOCAL_RUNTIME)
def parity(
    given: Given,
    samples: SamplesOpt = None,
    variant: VariantsOpt = None,
    reference_device: ReferenceDeviceOpt = "cpu",
    reference_dtype: ReferenceDtypeOpt = "float32",
    top_k: TopKOpt = 10,
    answer_tokens: AnswerTokensOpt = 16,
    override: OverrideOpt = None,
    switch_check: SwitchCheckOpt = True,
    quiet: o.QuietOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Teacher-forced logprobs of the same answer tokens in vLLM and in HF transformers.

    HF transformers (the reference) greedy-decodes a short answer to each of N samples and
    scores it; each variant scores the same token ids, with the same image, in vLLM (float32
    unless --dtype says otherwise). Writes parity.csv (per variant: max and mean |delta
    logprob|, first-token max, mean KL over the top-k, first-token agreement),
    parity_positions.csv, parity.md (verdict: the variant closest to the reference, and whether
    it is within the fp32 tolerance of 1e-5) and parity.json (settings) into --out.

    Example: screenspot-eval parity --model google/gemma-4-E4B-it --samples 20 --out results/e4b-parity
    """
    from screenspot_eval.run.parity import (
        DEFAULT_SAMPLES,
        DEFAULT_VARIANTS,
        PARITY_DTYPE,
        ParityOptions,
        describe_parity,
        run_parity,
    )

    limit = given["limit"]
    if samples is not None and limit is not None and samples != limit:
        raise UserError(f"--samples {samples} and --limit {limit} disagree; give one of them")
    fixed = {} if samples is None else {"data.selection.limit": samples}
    config = given.resolve(
        defaults={"engine.dtype": PARITY_DTYPE, "data.selection.limit": DEFAULT_SAMPLES}, **fixed
    )
    options = ParityOptions(
        variants=split_endpoints(variant) or DEFAULT_VARIANTS,
        reference_device=reference_device,
        reference_dtype=reference_dtype,
        top_k=top_k,
        answer_tokens=answer_tokens,
        overrides=parse_overrides(override or []),
        check_switches=switch_check,
    )
    if print_config:
        print_json(describe_parity(config, options))
        return
    result = run_parity(config, options, quiet=quiet)
    typer.echo(result.terminal)
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")

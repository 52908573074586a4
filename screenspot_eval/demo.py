"""The CPU demo (`make demo`): tiny model, synthetic data, post vs pre in the real vLLM engine.

Builds what is missing (the tiny checkpoint in ``models/tiny-gemma4``, a 60-sample synthetic
release in ``data/synth-demo``), then runs ``screenspot-eval compare`` with
``configs/tiny-cpu.toml`` into ``results/demo``. Re-running resumes; ``--fresh`` starts over.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEMO_CONFIG = Path("configs/tiny-cpu.toml")
MODEL_DIR = Path("models/tiny-gemma4")
DATA_DIR = Path("data/synth-demo")
OUT_DIR = Path("results/demo")
N_SAMPLES = 100

BANNER = """\
screenspot-eval demo: post-norm vs pre-norm Gemma 4 embedder, in the real vLLM engine (CPU).
The model is a tiny RANDOM Gemma 4: its numbers say nothing about Gemma 4. Structured decoding
is on so it emits well-formed boxes, and the synthetic targets are enlarged so it hits some.
"""

REAL_RUN = """\
A real run on a GPU machine (see README, "A real run"):
  pip install -e '.[gpu]'
  screenspot-eval compare -c configs/pr40411-gemma-4-31b.toml  (--a post --b pre)
"""


def prepare(model_dir: Path = MODEL_DIR, data_dir: Path = DATA_DIR) -> None:
    """Build the tiny checkpoint and the synthetic release unless they already exist."""
    if not (model_dir / "config.json").is_file():
        from screenspot_eval.backends.vllm.tiny import build_tiny_gemma4

        print(f"building the tiny Gemma 4 checkpoint in {model_dir} ...")
        build_tiny_gemma4(model_dir)
    if not (data_dir / "annotations").is_dir():
        from screenspot_eval.data.synth import synthesize_release

        print(f"writing a {N_SAMPLES}-sample synthetic ScreenSpot-Pro release to {data_dir} ...")
        synthesize_release(data_dir, N_SAMPLES, seed=0, max_width=1280, target_scale=8.0)


def main(argv: list[str] | None = None) -> int:
    from screenspot_eval.cli.app import app

    args = list(sys.argv[1:] if argv is None else argv)
    fresh = "--fresh" in args
    print(BANNER)
    prepare()
    command = ["compare", "--config", str(DEMO_CONFIG), "--a", "post", "--b", "pre"]
    command += ["--out", str(OUT_DIR), *(["--restart"] if fresh else [])]
    print("running: screenspot-eval " + " ".join(command) + "\n")
    try:
        code = app(command, prog_name="screenspot-eval", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
    if code:
        return int(code)
    print(f"\nopen {OUT_DIR / 'report.html'} in a browser for the annotated flips.")
    print(REAL_RUN)
    return 0


if __name__ == "__main__":
    sys.exit(main())

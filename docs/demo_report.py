"""Write a demo A/B comparison report from a synthetic release and made-up records.

No model and no GPU: a small synthetic dataset in the official layout is written, two variants'
answers are drawn at random (about 40 % vs 45 % correct, a few wrong formats and one failed
request), and every comparison output is written exactly as `screenspot-eval compare` would.
Used to produce docs/report-screenshot.png (see docs/development.md).

    .venv/bin/python docs/demo_report.py /tmp/demo-report
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.report.comparison import write_comparison
from screenspot_eval.report.pairing import pair_records
from screenspot_eval.stats.slices import compare_slices
from screenspot_eval.store.records import PredictionRecord, records_frame


def _answer(rng: random.Random, sample, p_correct: float, variant: str) -> dict:
    """A made-up answer: a click inside the box, a near miss, no coordinates, or a failure."""
    x1, y1, x2, y2 = sample.bbox
    w, h = sample.img_size
    roll = rng.random()
    if roll < p_correct:
        x, y, outcome = rng.uniform(x1, x2), rng.uniform(y1, y2), "correct"
    elif roll < p_correct + 0.06:
        return {"outcome": "wrong_format", "raw_response": "I cannot see that element."}
    elif variant == "post" and roll > 0.995:
        return {"outcome": "failed", "raw_response": None, "error": "HTTP 503 after 3 tries"}
    else:
        x, y, outcome = rng.uniform(0, w), rng.uniform(0, h), "wrong"
    y1000, x1000 = round(1000 * y / h), round(1000 * x / w)
    return {
        "outcome": outcome,
        "raw_response": f'{{"point": [{y1000}, {x1000}]}}',
        "pred_x": x,
        "pred_y": y,
    }


def main(out: Path) -> None:
    data = out / "data"
    synthesize_release(data, 60, seed=7, max_width=1280, target_scale=2.5)
    samples = load_release(data).samples
    rng = random.Random(40411)
    frames = {}
    for variant, p_correct in (("post", 0.40), ("pre", 0.45)):
        records = []
        for sample in samples:
            answer = _answer(rng, sample, p_correct, variant)
            records.append(
                PredictionRecord(
                    **sample.model_dump(exclude={"instruction_cn"}),
                    language="en",
                    prompt_hash="demo",
                    convention="yx-1000",
                    variant=variant,
                    parse_status=None,
                    failure_kind=None,
                    answer_format=None,
                    out_of_image=None,
                    distance_px=None,
                    attempts=1,
                    latency_s=0.5,
                    prompt_tokens=None,
                    completion_tokens=None,
                    **{"pred_x": None, "pred_y": None, "error": None} | answer,
                )
            )
        frames[variant] = records_frame(records)
    paired = pair_records(frames["post"], frames["pre"])
    comparison = compare_slices(paired.frame, n_resamples=2000)
    files = write_comparison(
        out,
        paired,
        comparison,
        label_a="post-norm",
        label_b="pre-norm",
        dataset_root=data,
        notes=["demo: synthetic screenshots and made-up answers, not a model's results"],
        max_flip_images=4,
    )
    print(comparison.headline("post-norm", "pre-norm"))
    for name, path in files.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-report"))

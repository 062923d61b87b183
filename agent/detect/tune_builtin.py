"""Tune the built-in detector's parameters on annotated Sticky Pi SVGs, and write ``params.json``.

Coordinate descent over a small grid per parameter (see ``GRID``), from the defaults of
:class:`~agent.detect.builtin.Params` (not the shipped file, which saw every image) and
from ``--restarts`` random grid points (fixed seed). Each round tries every value of every
parameter, keeping a change only if it raises the objective: the mean over the tuning
images of ``F1@0.5 + 0.1 x F1@0.25`` (each card counts the same however many insects it
holds). The card model (background)
is not tuned, so each image is decoded and modelled once.

    python -m agent.detect.tune_builtin --tune A.svg --score B.svg      # tune on A, score on B
    python -m agent.detect.tune_builtin --tune DIR --leave-one-out      # each image scored by the rest
    python -m agent.detect.tune_builtin --tune DIR --out agent/detect/params.json --created 1763773200
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.detect.builtin import DEFAULT_MAX_SIDE, Params, Prepared, load_params, outlines, prepare
from agent.detect.evaluate import (
    AnnotatedImage,
    Score,
    collect_svgs,
    combine,
    read_annotated_svg,
    score_image,
)

GRID: dict[str, list[Any]] = {
    "colour_weight": [0.0, 0.25, 0.5, 0.75, 1.0],
    "smooth": [1.0, 1.5, 2.0, 3.0],
    "floor": [2.0, 2.5, 3.0, 4.0, 5.0],
    "seed": [8.0, 10.0, 12.0, 15.0, 20.0],
    "outline_frac": [0.0, 0.1, 0.15, 0.2, 0.25],
    "close": [1.0, 3.0, 5.0],
    "min_area": [60.0, 100.0, 150.0, 200.0],
    "drop_border": [False, True],
}
ROUNDS = 4
RESTARTS = 8


class Case:
    """One annotated image, prepared once for repeated scoring."""

    def __init__(self, image: AnnotatedImage, params: Params, max_side: int) -> None:
        self.image = image
        self.name = image.path.name
        self.prepared: Prepared = prepare(image.jpeg, params, max_side)

    def score(self, params: Params) -> Score:
        """Given parameters, return this image's Score."""
        pred = [o.contour.reshape(-1, 2).astype(float) for o in outlines(self.prepared, params)]
        return score_image(self.name, pred, self.image.outlines)


def objective(scores: Sequence[Score]) -> float:
    """Given per-image Scores, return the mean of F1@0.5 + 0.1 x F1@0.25."""
    return sum(s.f1(0.5) + 0.1 * s.f1(0.25) for s in scores) / max(len(scores), 1)


def descend(cases: Sequence[Case], start: Params) -> tuple[Params, float]:
    """Given prepared images and a starting point, return the coordinate-descent optimum and its objective."""
    best, best_value = start, objective([c.score(start) for c in cases])
    for _ in range(ROUNDS):
        changed = False
        for key, values in GRID.items():
            for value in values:
                if getattr(best, key) == value:
                    continue
                candidate = replace(best, **{key: value})
                v = objective([c.score(candidate) for c in cases])
                if v > best_value + 1e-9:
                    best, best_value, changed = candidate, v, True
        if not changed:
            break
    return best, best_value


def tune(cases: Sequence[Case], start: Params, restarts: int = RESTARTS, log: bool = True) -> Params:
    """Given prepared images and starting parameters, return the best of coordinate descents.

    The first descent starts at ``start``, the others at random grid points (fixed seed,
    so tuning is reproducible).
    """
    rng = random.Random(0)
    starts = [start] + [
        replace(start, **{k: rng.choice(v) for k, v in GRID.items()}) for _ in range(restarts)
    ]
    best, best_value = start, float("-inf")
    for i, s in enumerate(starts):
        p, v = descend(cases, s)
        if log:
            print(f"descent {i}: objective {v:.4f}", file=sys.stderr)
        if v > best_value + 1e-9:
            best, best_value = p, v
    return best


def describe(scores: Sequence[Score], label: str) -> list[str]:
    """Return one line per Score and one for their combination."""
    lines = []
    for s in [*scores, combine(scores, "overall")] if len(scores) > 1 else scores:
        lines.append(
            f"{label:<6} {s.name[:34]:<34} people {s.truth:>3} found {s.detected:>3}  "
            f"F1@0.5 {s.f1(0.5):.3f} (P {s.precision(0.5):.3f} R {s.recall(0.5):.3f})  "
            f"F1@0.25 {s.f1(0.25):.3f}  |err| {s.count_error}"
        )
    return lines


def write_params(params: Params, path: Path, cases: Sequence[Case]) -> None:
    """Write ``params`` as JSON to ``path`` with an ``info`` block naming the images and scores."""
    data = params.to_dict()
    data["info"] = {
        "trained_on": [c.name for c in cases],
        "scores": {
            c.name: {"f1_0.5": round(s.f1(0.5), 4), "f1_0.25": round(s.f1(0.25), 4)}
            for c, s in zip(cases, [c.score(params) for c in cases], strict=True)
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m agent.detect.tune_builtin", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--tune", nargs="+", type=Path, required=True, help="SVGs or folders to tune on")
    ap.add_argument("--score", nargs="*", type=Path, default=[], help="SVGs or folders to score only")
    ap.add_argument(
        "--leave-one-out", action="store_true", help="score each tuning image tuned on the others"
    )
    ap.add_argument("--start", type=Path, default=None, help="starting parameters [the built-in defaults]")
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="working long side, pixels")
    ap.add_argument("--out", type=Path, default=None, help="write the tuned parameters here")
    ap.add_argument("--restarts", type=int, default=RESTARTS, help="descents from random grid points")
    ap.add_argument("--created", type=int, default=None, help="'created' timestamp [now]")
    args = ap.parse_args(argv)
    try:
        start = load_params(args.start)[0] if args.start else Params(created=0)
        tune_cases = [Case(read_annotated_svg(p), start, args.max_side) for p in collect_svgs(args.tune)]
        score_cases = (
            [Case(read_annotated_svg(p), start, args.max_side) for p in collect_svgs(args.score)]
            if args.score
            else []
        )
    except (OSError, ValueError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    if args.leave_one_out:
        if len(tune_cases) < 2:
            print("train: error: --leave-one-out needs two tuning images or more", file=sys.stderr)
            return 2
        held: list[Score] = []
        for i, case in enumerate(tune_cases):
            params = tune([c for j, c in enumerate(tune_cases) if j != i], start, args.restarts, log=False)
            held.append(case.score(params))
            print(f"held out {case.name}: {json.dumps(params.to_dict())}")
        print("\n".join(describe(held, "loo")))
        return 0
    params = tune(tune_cases, start, args.restarts)
    params = replace(params, created=args.created if args.created is not None else int(time.time()))
    print(json.dumps(params.to_dict()))
    print("\n".join(describe([c.score(params) for c in tune_cases], "tuned")))
    if score_cases:
        print("\n".join(describe([c.score(params) for c in score_cases], "scored")))
    if args.out is not None:
        write_params(params, args.out, tune_cases)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

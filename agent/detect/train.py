"""Train the learned insect detector from annotated Sticky Pi cards, and score it leave-one-trap-out.

    python -m agent.detect.train ../shared/data/annotated              # LOTO table + shipped model
    python -m agent.detect.train ../shared/data/annotated --no-loto    # the shipped model only

Needs the ``[train]`` extra (torch, CPU build). One model per held-out trap (trained on
the other traps' cards, scored on the held-out trap's cards), and the shipped model on
every card; ``--jobs`` processes of one thread each share them. Everything is seeded
(``--seed``): the same command on the same machine gives the same model. Writes
``insects.onnx`` and ``insects.json`` (settings, ``created``, and the table) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.detect.cards import Card, load_card, patch
from agent.detect.evaluate import THRESHOLDS, Score, collect_svgs, combine, score_image
from agent.detect.learned import DEFAULT_MODEL, LearnedDetector, Settings, normalised, settings_path

STEPS = 900
BATCH = 6
PATCH = 224
LR = 2e-3
SEED = 20261129
#: Inputs divided by the card's colour (see agent.detect.learned.normalised).
NORMALISE = True
#: BatchNorm after each convolution while training (folded into the convolutions on export).
NORM = True

_CARDS: list[Card] = []  # set before the worker processes fork


def train_model(cards: Sequence[Card], steps: int, seed: int, log: str = "") -> Any:
    """Given cards, a step count and a seed, return a trained InsectNet (torch, one thread)."""
    import torch
    import torch.nn.functional as F

    from agent.detect.net import InsectNet

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = InsectNet(norm=NORM)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    half = PATCH // 2
    t0 = time.monotonic()
    net.train()
    for step in range(steps):
        xs, ms, cs = [], [], []
        for _ in range(BATCH):
            img, mask, centre = patch(cards[int(rng.integers(len(cards)))], PATCH, rng)
            xs.append(
                (normalised(img) if NORMALISE else img.astype(np.float32) / 255 - 0.5).transpose(2, 0, 1)
            )
            ms.append(mask.reshape(half, 2, half, 2).mean(axis=(1, 3)))
            cs.append(centre.reshape(half, 2, half, 2).mean(axis=(1, 3)))
        x = torch.from_numpy(np.stack(xs))
        m = torch.from_numpy(np.stack(ms))
        c = torch.from_numpy(np.stack(cs))
        logits = net(x)
        pm = torch.sigmoid(logits[:, 0])
        dice = 1 - (2 * (pm * m).sum() + 1) / (pm.sum() + m.sum() + 1)
        loss = (
            F.binary_cross_entropy_with_logits(logits[:, 0], m)
            + dice
            + F.binary_cross_entropy_with_logits(logits[:, 1], c)
        )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        if log and (step + 1) % 250 == 0:
            print(
                f"{log}: step {step + 1}/{steps} loss {loss.item():.3f} ({time.monotonic() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return net


#: Post-processing settings tried on the training cards after each training (see tune_settings).
GRID: dict[str, tuple[float, ...]] = {
    "mask_threshold": (0.4, 0.5, 0.6),
    "centre_threshold": (0.06, 0.1, 0.2),
    "min_confidence": (0.0, 0.7, 0.75, 0.8, 0.85),
}


def tune_settings(model: Path, cards: Sequence[Card], settings: Settings) -> Settings:
    """Given a model file, its training cards and settings, return the settings with the values
    of GRID that score best on those cards (F1 at IoU 0.5 plus F1 at IoU 0.33, all insects pooled)."""
    import itertools

    det = LearnedDetector(model, runtime="opencv")
    cases = []
    for card in cards:
        h, w = card.image.shape[:2]
        full = (round(w * card.full_side / max(w, h)), round(h * card.full_side / max(w, h)))
        cases.append((card, det.maps(card.image), card.full_side / max(w, h), full))
    best, best_value = settings, -1.0
    for values in itertools.product(*GRID.values()):
        chosen: dict[str, Any] = dict(zip(GRID, values, strict=True))
        s = replace(settings, **chosen)
        scores = []
        for card, (mask, centre), k, full in cases:
            found = LearnedDetector.outlines_from_maps(mask, centre, k, full, s)
            pred = [o.contour.reshape(-1, 2).astype(np.float64) for o in found]
            scores.append(score_image(card.name, pred, card.outlines))
        total = combine(scores)
        value = total.f1(0.5) + total.f1(0.33)
        if value > best_value + 1e-9:
            best, best_value = s, value
    return best


def _write(net: Any, out: Path, settings: Settings, info: dict[str, Any]) -> None:
    from agent.detect.net import export_onnx

    export_onnx(net, out)
    data = settings.to_dict()
    data["info"] = info
    settings_path(out).write_text(json.dumps(data, indent=2) + "\n")


def score_cards(model: Path, cards: Sequence[Card]) -> list[Score]:
    """Given a model file and cards, return each card's Score (opencv runtime, as on the trap)."""
    det = LearnedDetector(model, runtime="opencv")
    scores = []
    for card in cards:
        t0 = time.perf_counter()
        found = det.detect(card.jpeg)
        pred = [o.contour.reshape(-1, 2).astype(np.float64) for o in found]
        scores.append(score_image(card.name, pred, card.outlines, time.perf_counter() - t0))
    return scores


Job = tuple[str, int, int, str, int]

#: Where ``--keep`` stores each held-out trap's model (``<trap>.onnx`` and ``.json``); "" not kept.
_KEEP = ""


def _task(job: Job) -> tuple[str, list[dict[str, Any]]]:
    """Train on every card but trap ``held`` and score the held-out cards; or (``held`` "") write ``out``."""
    held, steps, seed, out, created = job
    train = [c for c in _CARDS if c.trap != held]
    net = train_model(train, steps, seed, log=f"held out {held}" if held else "shipped model")
    settings = Settings(created=created, normalise=int(NORMALISE))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        _write(net, model, settings, {})
        settings = tune_settings(model, train, settings)
        if not held:
            _write(net, Path(out), settings, {})
            return "", []
        _write(net, model, settings, {})
        if _KEEP:
            _write(net, Path(_KEEP) / f"{held}.onnx", settings, {})
        return held, [vars(s) for s in score_cards(model, [c for c in _CARDS if c.trap == held])]


def table(by_trap: dict[str, list[Score]]) -> list[str]:
    """Return the leave-one-trap-out table: one line per card, per trap, and overall."""
    head = f"{'trap':<9} {'card':<34} {'people':>6} {'found':>5}"
    for t in THRESHOLDS:
        head += f"  {'P@' + format(t, 'g'):>6} {'R@' + format(t, 'g'):>6} {'F1@' + format(t, 'g'):>7}"
    lines = [head]

    def line(trap: str, s: Score) -> str:
        text = f"{trap:<9} {s.name[:34]:<34} {s.truth:>6} {s.detected:>5}"
        for t in THRESHOLDS:
            text += f"  {s.precision(t):>6.3f} {s.recall(t):>6.3f} {s.f1(t):>7.3f}"
        return text

    every: list[Score] = []
    for trap, scores in sorted(by_trap.items()):
        every.extend(scores)
        lines.extend(line(trap, s) for s in scores)
        if len(scores) > 1:
            lines.append(line(trap, combine(scores, "(trap)")))
    lines.append(line("all", combine(every, f"overall, {len(every)} cards")))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    global _CARDS, _KEEP
    ap = argparse.ArgumentParser(prog="python -m agent.detect.train", description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+", type=Path, help="annotated SVGs or folders of them")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="model to write [%(default)s]")
    ap.add_argument("--steps", type=int, default=STEPS, help="training steps per model [%(default)s]")
    ap.add_argument("--seed", type=int, default=SEED, help="random seed [%(default)s]")
    ap.add_argument("--jobs", type=int, default=2, help="models trained at once [%(default)s]")
    ap.add_argument("--no-loto", action="store_true", help="skip the leave-one-trap-out scores")
    ap.add_argument("--no-model", action="store_true", help="only the leave-one-trap-out scores")
    ap.add_argument("--traps", nargs="+", default=None, help="hold out only these traps [all]")
    ap.add_argument("--keep", type=Path, default=None, help="keep each held-out trap's model here")
    ap.add_argument("--created", type=int, default=None, help="'created' timestamp [now]")
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # before any OpenCV call: a thread pool in this process would not survive the fork
    try:
        _CARDS = [load_card(p) for p in collect_svgs(args.data)]
    except (OSError, ValueError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    traps = sorted({c.trap for c in _CARDS})
    print(f"{len(_CARDS)} cards from {len(traps)} traps, {sum(len(c.outlines) for c in _CARDS)} insects")
    created = args.created if args.created is not None else int(time.time())
    jobs: list[Job] = []
    if not args.no_model:
        jobs.append(("", args.steps, args.seed, str(args.out), created))
    if not args.no_loto:
        jobs.extend((t, args.steps, args.seed, "", 0) for t in (args.traps or traps) if t in traps)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        _KEEP = str(args.keep)
    t0 = time.monotonic()
    with multiprocessing.get_context("fork").Pool(max(1, args.jobs)) as pool:
        results = pool.map(_task, jobs, chunksize=1)
    by_trap = {held: [Score(**d) for d in scores] for held, scores in results if held}
    lines = table(by_trap) if by_trap else []
    print("\n".join(lines))
    print(f"trained {len(jobs)} models in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    if not args.no_model:
        data = json.loads(settings_path(args.out).read_text())
        data["info"] = {
            "trained_on": [c.name for c in _CARDS],
            "steps": args.steps,
            "seed": args.seed,
            "leave_one_trap_out": lines,
        }
        settings_path(args.out).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out} and {settings_path(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

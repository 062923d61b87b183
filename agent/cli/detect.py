"""stickyctl commands of the detector: detect eval, detect run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent.cli import cli
from agent.errors import StickyAgentError

if TYPE_CHECKING:
    from agent.detect import Detector


@cli.group("detect")
def detect_group() -> None:
    """Find insects with the learned or built-in detector, and score it against people's outlines."""


def _detector_options(f: Any) -> Any:
    options = [
        click.option(
            "--type",
            "kind",
            type=click.Choice(["learned", "builtin"]),
            default="learned",
            show_default=True,
            help="Detector: the neural network, or the classical OpenCV fallback.",
        ),
        click.option(
            "--model",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="learned: an .onnx model with its .json beside it [the one shipped with the agent].",
        ),
        click.option(
            "--runtime",
            type=click.Choice(["auto", "opencv", "onnxruntime"]),
            default="auto",
            show_default=True,
            help="learned: what runs the network (auto: onnxruntime when installed, else OpenCV).",
        ),
        click.option(
            "--params",
            "params_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="builtin: parameters (JSON) [the ones shipped with the agent].",
        ),
        click.option(
            "--max-side",
            type=click.IntRange(320, 8192),
            default=None,
            help="Long side, in pixels, images are reduced to before detection [builtin: 1296; learned: "
            "the model's, 1296; larger when the camera sees insects smaller].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make(
    kind: str, model: Path | None, runtime: str, params_path: Path | None, max_side: int | None
) -> Detector:
    from agent.config import BuiltinDetectorConfig, LearnedDetectorConfig
    from agent.detect import make_detector

    if kind == "learned":
        return make_detector(
            LearnedDetectorConfig(type="learned", model=model, runtime=runtime, max_side=max_side)  # type: ignore[arg-type]
        )
    side = {"max_side": max_side} if max_side is not None else {}
    return make_detector(BuiltinDetectorConfig(type="builtin", params=params_path, **side))


@detect_group.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_detector_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def detect_eval(
    paths: tuple[Path, ...],
    kind: str,
    model: Path | None,
    runtime: str,
    params_path: Path | None,
    max_side: int | None,
    as_json: bool,
) -> None:
    """Score a detector on Sticky Pi annotated SVGs (files or folders): P, R, F1 at IoU 0.5, 0.33, 0.25."""
    from agent.detect import DetectorError
    from agent.detect.evaluate import evaluate

    detector = _make(kind, model, runtime, params_path, max_side)
    try:
        report = evaluate(detector, paths)
    except (OSError, ValueError) as e:
        raise DetectorError(str(e)) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


@detect_group.command("run")
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_detector_options
@click.option("--json", "as_json", is_flag=True, help="The annotations the sync would push, as JSON.")
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the picture with the outlines drawn to this JPEG (several images: NAME-<image>.jpg).",
)
def detect_run(
    images: tuple[Path, ...],
    kind: str,
    model: Path | None,
    runtime: str,
    params_path: Path | None,
    max_side: int | None,
    as_json: bool,
    overlay: Path | None,
) -> None:
    """Detect the insects on JPEG images and print how many, or (--json) their outlines."""
    import hashlib

    from PIL import Image

    from agent.detect import to_annotations
    from agent.detect.overlay import draw_overlay

    detector = _make(kind, model, runtime, params_path, max_side)
    results: list[dict[str, Any]] = []
    for path in images:
        data = path.read_bytes()
        t0 = time.perf_counter()
        try:
            outlines = detector.detect(data)
        except StickyAgentError as e:
            raise StickyAgentError(f"{path}: {e}") from e
        except (Image.DecompressionBombError, ValueError, OSError) as e:
            raise StickyAgentError(f"{path}: not a usable image ({type(e).__name__}: {e})") from e
        seconds = time.perf_counter() - t0
        if overlay is not None:
            out = overlay if len(images) == 1 else overlay.with_name(f"{overlay.stem}-{path.stem}.jpg")
            draw_overlay(data, outlines, out)
        results.append(
            {
                "file": str(path),
                "md5": hashlib.md5(data).hexdigest(),
                "algo_name": detector.name,
                "algo_version": detector.version,
                "n_objects": len(outlines),
                "seconds": round(seconds, 3),
                "annotations": to_annotations(outlines),
            }
        )
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"detector {detector.name} {detector.version}")
    for r in results:
        click.echo(f"{Path(r['file']).name}: {r['n_objects']} insects ({r['seconds']:.2f} s)")

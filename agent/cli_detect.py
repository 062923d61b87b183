"""stickyctl commands of the detector: detect eval, detect run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from agent.cli import cli
from agent.errors import StickyAgentError


@cli.group("detect")
def detect_group() -> None:
    """Find insects with the built-in detector, and score it against people's outlines."""


_detect_params = click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Detector parameters (JSON) [the ones shipped with the agent].",
)
_detect_max_side = click.option(
    "--max-side",
    type=click.IntRange(320, 8192),
    default=1296,
    show_default=True,
    help="Long side, in pixels, images are reduced to before detection.",
)


@detect_group.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_detect_params
@_detect_max_side
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def detect_eval(paths: tuple[Path, ...], params_path: Path | None, max_side: int, as_json: bool) -> None:
    """Score the detector on Sticky Pi annotated SVGs (files or folders): P, R, F1 at IoU 0.5 and 0.25."""
    from agent.detect import DetectorError
    from agent.detect.builtin import BuiltinDetector
    from agent.detect.evaluate import evaluate

    detector = BuiltinDetector(params_path=params_path, max_side=max_side)
    try:
        report = evaluate(detector, paths)
    except (OSError, ValueError) as e:
        raise DetectorError(str(e)) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


@detect_group.command("run")
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_detect_params
@_detect_max_side
@click.option("--json", "as_json", is_flag=True, help="The annotations the sync would push, as JSON.")
def detect_run(images: tuple[Path, ...], params_path: Path | None, max_side: int, as_json: bool) -> None:
    """Detect the insects on JPEG images and print how many, or (--json) their outlines."""
    import hashlib

    from PIL import Image

    from agent.detect import to_annotations
    from agent.detect.builtin import BuiltinDetector

    detector = BuiltinDetector(params_path=params_path, max_side=max_side)
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
        results.append(
            {
                "file": str(path),
                "md5": hashlib.md5(data).hexdigest(),
                "algo_name": detector.name,
                "algo_version": detector.version,
                "n_objects": len(outlines),
                "seconds": round(time.perf_counter() - t0, 3),
                "annotations": to_annotations(outlines),
            }
        )
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"detector {detector.name} {detector.version}")
    for r in results:
        click.echo(f"{Path(r['file']).name}: {r['n_objects']} insects ({r['seconds']:.2f} s)")

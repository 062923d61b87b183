"""On-device insect detection: SVG ground truth parsing, IoU matching, the built-in detector on
the two annotated Sticky Pi images, its version string, annotations JSON, config and CLI.

The annotated SVGs and real images in ``tests/data`` are only read.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import REPO, run_stickyctl

from agent.config import BuiltinDetectorConfig, NoDetectorConfig, config_from_mapping
from agent.detect import ALGO_VERSION_MAX, DetectorError, Outline, make_detector, to_annotations
from agent.detect.builtin import DEFAULT_PARAMS, BuiltinDetector, load_params
from agent.detect.evaluate import (
    Report,
    collect_svgs,
    evaluate,
    iou_matrix,
    match_count,
    parse_path_d,
    read_annotated_svg,
)
from agent.errors import ConfigError

DATA = REPO / "tests" / "data"
ANNOTATED = DATA / "annotated"
REAL = DATA / "real-images"
SVG_A = ANNOTATED / "0a5bb6f4.2020-06-30_20-41-05.svg"
SVG_B = ANNOTATED / "1b74105a.2020-09-17_13-50-40.svg"
needs_data = pytest.mark.skipif(not SVG_A.exists(), reason="shared annotated data not present")

#: Measured with the shipped params.json: F1@0.5 0.766 and 0.703 (0.755 overall); floors
#: below that so a regression shows but matching details (Hungarian vs greedy) do not.
F1_FLOOR = {SVG_A.name: 0.68, SVG_B.name: 0.55}
F1_FLOOR_OVERALL = 0.68


def square(x: float, y: float, s: float) -> np.ndarray[Any, Any]:
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=np.float64)


# --- SVG path data ---------------------------------------------------------------------------


def test_path_absolute_with_implicit_lineto() -> None:
    (p,) = parse_path_d("M529,369 505,370 486,390 Z")
    assert p.tolist() == [[529, 369], [505, 370], [486, 390]]


def test_path_relative_with_implicit_lineto_and_hv() -> None:
    (p,) = parse_path_d("m 10,20 5,0 l 0,5 h -3 v 2 H 1 V 30 L 2,3 z")
    assert p.tolist() == [[10, 20], [15, 20], [15, 25], [12, 25], [12, 27], [1, 27], [1, 30], [2, 3]]


def test_path_several_subpaths_and_relative_move_after_close() -> None:
    subs = parse_path_d("M 0,0 10,0 10,10 Z m 20,0 l 5,0 0,5 z M1e1,-2.5e0 .5,.5 1,1z")
    assert len(subs) == 3
    assert subs[1].tolist() == [[20, 0], [25, 0], [25, 5]]  # m after Z is relative to the start
    assert subs[2].tolist() == [[10, -2.5], [0.5, 0.5], [1, 1]]


def test_path_curves_are_flattened_to_their_end_points() -> None:
    (p,) = parse_path_d("M 0,0 C 0,10 10,10 10,0 c 0,-5 -5,-5 -5,0 Z")
    assert p[0].tolist() == [0, 0]
    assert np.allclose(p[8], [10, 0]) and np.allclose(p[-1], [5, 0])
    assert p[:, 1].max() == pytest.approx(7.5)  # the cubic's apex


@pytest.mark.parametrize("d", ["10,10 20,20", "M 1", "M 1,2 L 3", "M 1,2 X 3,4", "M 1,2 L 3,4 L"])
def test_path_malformed_raises(d: str) -> None:
    with pytest.raises(ValueError):
        parse_path_d(d)


@needs_data
def test_annotated_svgs_hold_the_documented_insects() -> None:
    a, b = read_annotated_svg(SVG_A), read_annotated_svg(SVG_B)
    assert (len(a.outlines), len(b.outlines)) == (87, 18)
    assert (a.width, a.height) == (2592, 1944)
    for img in (a, b):
        pts = np.vstack(img.outlines)
        assert pts.min() > -5 and pts[:, 0].max() < img.width + 5 and pts[:, 1].max() < img.height + 5
    found = collect_svgs([ANNOTATED, SVG_A])
    assert len(found) == len(list(ANNOTATED.glob("*.svg"))) + 1 and found[-1] == SVG_A
    assert {SVG_A, SVG_B} <= set(found)


def test_collect_svgs_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        collect_svgs([tmp_path / "nope"])
    with pytest.raises(ValueError):
        collect_svgs([tmp_path])


# --- IoU and matching ------------------------------------------------------------------------


def test_iou_of_synthetic_polygons() -> None:
    truth = [square(0, 0, 100), square(300, 300, 50)]
    pred = [square(0, 0, 100), square(50, 0, 100), square(1000, 1000, 10)]
    iou = iou_matrix(pred, truth)
    assert iou.shape == (3, 2)
    assert iou[0, 0] == pytest.approx(1.0, abs=0.03)
    assert iou[1, 0] == pytest.approx(1 / 3, abs=0.03)
    assert iou[2].max() == 0 and iou[:, 1].max() == 0
    assert iou_matrix([], truth).shape == (0, 2)


@pytest.mark.parametrize("greedy", [False, True])
def test_matching_is_one_to_one(monkeypatch: pytest.MonkeyPatch, greedy: bool) -> None:
    if greedy:
        monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails: greedy path
    truth = [square(0, 0, 100), square(200, 0, 100)]
    pred = [square(0, 0, 100), square(5, 5, 100), square(0, 0, 95), square(220, 0, 100)]
    iou = iou_matrix(pred, truth)
    assert match_count(iou, 0.5) == 2  # three predictions on one insect count once
    assert match_count(iou, 0.95) == 1
    assert match_count(np.zeros((0, 3)), 0.5) == 0


# --- the built-in detector on people's outlines ---------------------------------------------


@pytest.fixture(scope="module")
def report() -> Report:
    return evaluate(BuiltinDetector(), [SVG_A, SVG_B])


@needs_data
def test_detector_f1_on_the_annotated_images(report: Report) -> None:
    for s in report.images:
        assert s.f1(0.5) >= F1_FLOOR[s.name], s.to_dict()
        assert s.f1(0.25) >= s.f1(0.5)
    assert report.overall.f1(0.5) >= F1_FLOOR_OVERALL
    assert report.overall.count_error <= 25


@needs_data
@pytest.mark.parametrize("path", [SVG_B, REAL / "512858f4.2022-05-17_18-46-57.jpg"])
def test_contours_are_int_n12_inside_the_full_image(path: Path) -> None:
    jpeg = read_annotated_svg(path).jpeg if path.suffix == ".svg" else path.read_bytes()
    h, w = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape
    outlines = BuiltinDetector().detect(jpeg)
    assert outlines
    full_w, full_h = (2592, 1944) if path.suffix == ".svg" else (4056, 3040)
    assert abs(w * 8 - full_w) < 8 and abs(h * 8 - full_h) < 8
    for o in outlines:
        c = o.contour
        assert c.dtype == np.int32 and c.ndim == 3 and c.shape[1:] == (1, 2) and len(c) >= 3
        assert c[..., 0].min() >= 0 and c[..., 0].max() < full_w
        assert c[..., 1].min() >= 0 and c[..., 1].max() < full_h
        assert cv2.contourArea(c) > 0


@pytest.mark.parametrize("card_bgr", [(40, 200, 215), (225, 230, 230)], ids=["yellow", "white"])
def test_synthetic_card_insects_not_droplets_or_uneven_light(card_bgr: tuple[int, int, int]) -> None:
    """A card lit unevenly: five dark insects, one grey one, three light droplets (not insects)."""
    h, w = 972, 1296
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.65 + 0.35 * np.exp(-((xx - 300) ** 2 + (yy - 200) ** 2) / (2 * 500.0**2))
    card = np.dstack([c * light for c in card_bgr]).astype(np.float32)
    for i, (x, y) in enumerate([(200, 200), (600, 300), (1000, 700), (400, 800), (900, 150)]):
        cv2.ellipse(card, (x, y), (22 + 3 * i, 9 + i), 30 * i, 0, 360, (30, 40, 40), -1)
    for x, y in [(700, 600), (300, 500), (1100, 400)]:
        cv2.circle(card, (x, y), 15, (160, 235, 240), -1)
    cv2.ellipse(card, (800, 850), (30, 12), 0, 0, 360, (125, 130, 115), -1)  # grey: hue lost
    rng = np.random.default_rng(0)
    card += rng.normal(0, 2.0, card.shape).astype(np.float32)
    ok, buf = cv2.imencode(".jpg", np.clip(card, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    found = BuiltinDetector().detect(buf.tobytes())
    centres = sorted(
        (round(float(c[..., 0].mean()), -2), round(float(c[..., 1].mean()), -2))
        for c in (o.contour for o in found)
    )
    assert len(found) == 6, centres
    assert (700, 600) not in centres and (300, 500) not in centres


def test_undecodable_jpeg_raises() -> None:
    with pytest.raises(DetectorError):
        BuiltinDetector().detect(b"not a jpeg")


# --- version, parameters, annotations -------------------------------------------------------


def test_algo_version_is_created_dash_md5_and_reproducible(tmp_path: Path) -> None:
    import hashlib

    det = BuiltinDetector()
    assert len(det.name) <= 64 and len(det.version) <= ALGO_VERSION_MAX
    assert re.fullmatch(r"\d{9,11}-[0-9a-f]{32}", det.version)
    created = json.loads(DEFAULT_PARAMS.read_text())["created"]
    assert det.version == f"{created}-{hashlib.md5(DEFAULT_PARAMS.read_bytes()).hexdigest()}"
    copy = tmp_path / "p.json"
    copy.write_bytes(DEFAULT_PARAMS.read_bytes())  # another mtime, same content: same version
    assert load_params(copy)[1] == det.version


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '{"created": 1}x',
        '{"ref_side": 1296}',
        '{"created": 1, "sharpness": 2}',
        "[]",
        '{"created": 1, "seed": "12"}',
        '{"created": 1, "drop_border": 1}',
        '{"created": 1, "seed": 1, "floor": 3}',
    ],
)
def test_bad_params_raise_detector_error(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(DetectorError):
        BuiltinDetector(params_path=bad)


def test_to_annotations_matches_the_api() -> None:
    o = Outline(np.array([[[1, 2]], [[30, 2]], [[30, 40]]], dtype=np.int32))
    (a,) = to_annotations([o])
    assert a == {
        "contour": [[[1, 2]], [[30, 2]], [[30, 40]]],
        "name": "insect",
        "fill_colour": "#ff0000",
        "stroke_colour": "#0000ff",
        "value": 0,
    }
    assert json.loads(json.dumps(a)) == a
    assert np.array(a["contour"]).shape == (3, 1, 2)
    with pytest.raises(ValueError):
        Outline(np.zeros((3, 2), dtype=np.int32))


# --- config and CLI --------------------------------------------------------------------------


def test_detector_config_tagged_union(tmp_path: Path) -> None:
    assert config_from_mapping({}, environ={}).detector == NoDetectorConfig(type="none")
    assert make_detector(NoDetectorConfig(type="none")) is None
    cfg = config_from_mapping({"detector": {"type": "builtin", "max_side": 1024}}, environ={})
    assert isinstance(cfg.detector, BuiltinDetectorConfig)
    det = make_detector(cfg.detector)
    assert det.name == "sticky-agent-builtin"
    with pytest.raises(ConfigError, match="detector: unknown type 'cnn'"):
        config_from_mapping({"detector": {"type": "cnn"}}, environ={})
    with pytest.raises(ConfigError, match=r"detector\.params: no such file"):
        config_from_mapping({"detector": {"type": "builtin", "params": str(tmp_path / "x")}}, environ={})


@needs_data
def test_cli_detect_eval_prints_figures_and_json() -> None:
    text = run_stickyctl("detect", "eval", str(ANNOTATED))
    assert text.returncode == 0, text.stderr
    assert "F1@0.5" in text.stdout and "overall" in text.stdout and SVG_B.name in text.stdout
    js = run_stickyctl("detect", "eval", "--json", str(SVG_A))
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["images"][0]["truth"] == 87
    assert {"precision", "recall", "f1", "matched"} <= set(data["overall"]["iou_0.5"])
    assert data["overall"]["iou_0.25"]["f1"] >= data["overall"]["iou_0.5"]["f1"]


@needs_data
def test_cli_detect_run_json_is_annotations() -> None:
    res = run_stickyctl("detect", "run", "--json", str(REAL / "5c173ff2.2020-06-20_21-33-24.jpg"))
    assert res.returncode == 0, res.stderr
    (item,) = json.loads(res.stdout)
    assert item["n_objects"] == len(item["annotations"]) > 0
    assert all(
        a["name"] == "insect" and np.array(a["contour"]).shape[1:] == (1, 2) for a in item["annotations"]
    )


def test_cli_does_not_import_opencv() -> None:
    code = "import sys, agent.cli, agent.detect; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"

"""The learned insect detector: the shipped model loads in OpenCV's DNN module (and onnxruntime,
agreeing), finds the insects on a real annotated card crop (``tests/data/detect``), nothing on a
blank card or a black or white frame, its version follows its files, the config and CLI choose it,
and (with the ``[train]`` extra) a trained network exports to an ONNX file OpenCV runs."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, run_stickyctl

from agent.config import LearnedDetectorConfig, config_from_mapping
from agent.detect import DetectorError, make_detector
from agent.detect.evaluate import read_annotated_svg, score_image
from agent.detect.learned import (
    DEFAULT_MODEL,
    STRIP_OVERLAP,
    LearnedDetector,
    Settings,
    load_model,
    regions,
    settings_path,
    strips,
)
from agent.errors import ConfigError

CROP = REPO / "tests" / "data" / "detect" / "5595c586.2020-08-31_18-47-19.crop.svg"
has_onnxruntime = importlib.util.find_spec("onnxruntime") is not None
has_torch = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def detector() -> LearnedDetector:
    return LearnedDetector(runtime="opencv")


def card_jpeg(bgr: tuple[int, int, int], seed: int = 0, size: tuple[int, int] = (2592, 1944)) -> bytes:
    """A 5 MP picture of one colour, with sensor noise and a gentle light gradient."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = bgr
    img *= (0.85 + 0.15 * np.linspace(0, 1, w, dtype=np.float32))[None, :, None]
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    ok, data = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8))
    assert ok
    return data.tobytes()


def on_a_card(w: int, h: int) -> bytes:
    """The crop pasted on a plain card of its median colour, w x h pixels, as a JPEG."""
    card = read_annotated_svg(CROP)
    small = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    big = np.full((h, w, 3), np.median(small.reshape(-1, 3), axis=0), np.uint8)
    big[600:1368, 800:1824] = small
    return bytes(cv2.imencode(".jpg", big)[1].tobytes())


def crop_outlines(det: LearnedDetector, bgr: np.ndarray) -> list[np.ndarray]:  # type: ignore[type-arg]
    """Detect on a full-resolution crop of a 2592-wide card, as detect() would on the whole card."""
    h, w = bgr.shape[:2]
    k = 2592 / det.settings.work_side
    work = cv2.resize(bgr, (round(w / k), round(h / k)), interpolation=cv2.INTER_AREA)
    return [o.contour.reshape(-1, 2).astype(np.float64) for o in det.detect_work(work, k, (w, h))]


def test_shipped_model_and_settings_load_with_a_hash_version() -> None:
    onnx, settings, version = load_model()
    assert len(onnx) < 5_000_000
    created, md5 = version.split("-")
    assert int(created) == settings.created > 1_700_000_000 and len(md5) == 32
    info = json.loads(settings_path(DEFAULT_MODEL).read_text())["info"]
    assert info["leave_one_trap_out"], "the shipped settings carry the table they were trained with"


def test_version_changes_with_the_model_or_its_settings(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(settings_path(DEFAULT_MODEL), settings_path(model))
    assert load_model(model)[2] == load_model()[2]
    data = json.loads(settings_path(model).read_text())
    data["mask_threshold"] = 0.6
    settings_path(model).write_text(json.dumps(data))
    assert load_model(model)[2] != load_model()[2]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{", "invalid"),
        ('{"work_side": 1296}', "created"),
        ('{"created": 1, "colour": 2}', "unknown"),
        ('{"created": 1, "mask_threshold": 1.5}', "between 0 and 1"),
        ('{"created": 1, "upsample": true}', "number"),
        ('{"created": 1, "strip_rows": 100}', "multiple of 32"),
        ('{"created": 1, "normalise": 3}', "normalise must be 0, 1 or 2"),
        ('{"created": 1, "output_stride": 4}', "output_stride must be 1 or 2"),
        ('{"created": 1, "views": 3}', "views must be one of 1, 2, 4"),
    ],
)
def test_bad_settings_raise_detector_error(tmp_path: Path, content: str, match: str) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    settings_path(model).write_text(content)
    with pytest.raises(DetectorError, match=match):
        load_model(model)


def test_a_missing_or_corrupt_model_is_a_detector_error(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="cannot read"):
        load_model(tmp_path / "absent.onnx")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not a network" * 10)
    shutil.copy(settings_path(DEFAULT_MODEL), settings_path(model))
    with pytest.raises(DetectorError, match="cannot load"):
        LearnedDetector(model, runtime="opencv")


def test_finds_the_insects_people_outlined_on_a_real_card_crop(detector: LearnedDetector) -> None:
    card = read_annotated_svg(CROP)
    bgr = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    found = crop_outlines(detector, bgr)
    # people outlined only the insects wholly inside the crop: score those
    inside = [p for p in found if p[:, 0].min() > 8 and p[:, 1].min() > 8 and p[:, 0].max() < 1016]
    inside = [p for p in inside if p[:, 1].max() < 760]
    score = score_image(CROP.name, inside, card.outlines)
    assert len(card.outlines) == 11
    # measured with the shipped model: 11 of 11 at IoU 0.33 (12 found), 8 of 11 at IoU 0.5
    assert score.recall(0.33) >= 0.8 and score.precision(0.33) >= 0.7, score
    assert score.recall(0.5) >= 0.6, score


@pytest.mark.parametrize(
    ("what", "bgr"),
    [("yellow card", (40, 215, 230)), ("black frame", (4, 4, 4)), ("white frame", (250, 250, 250))],
)
def test_nothing_on_a_blank_card_or_a_black_or_white_frame(
    detector: LearnedDetector, what: str, bgr: tuple[int, int, int]
) -> None:
    assert detector.detect(card_jpeg(bgr)) == [], what


def test_outlines_are_in_full_pixels_of_a_12_mp_picture(detector: LearnedDetector) -> None:
    found = detector.detect(on_a_card(4056, 3040))  # a 2592-scale crop: insects look smaller
    assert found
    for o in found:
        pts = o.contour.reshape(-1, 2)
        assert pts.dtype == np.int32 and (pts[:, 0] < 4056).all() and (pts[:, 1] < 3040).all()
        assert (pts >= 0).all()


def test_max_side_sees_smaller_insects_at_the_size_the_model_learnt(detector: LearnedDetector) -> None:
    """The crop of a 2592-wide card pasted on a 4056-wide one: its insects take a smaller share of
    the picture. Worked at 2028 pixels (not 1296) they are the size the network learnt, and it finds
    what it finds on the 2592-wide card, the smallest insect scaled with them."""
    wide = LearnedDetector(runtime="opencv", max_side=2028)
    k = (detector.settings.work_side / 2028) ** 2
    assert wide.settings.work_side == 2028 and wide.settings.min_area == pytest.approx(
        detector.settings.min_area * k
    )
    truth = [np.add(o, (800, 600)) for o in read_annotated_svg(CROP).outlines]

    def score(det: LearnedDetector, w: int, h: int) -> tuple[int, dict[float, int]]:
        found = [o.contour.reshape(-1, 2) for o in det.detect(on_a_card(w, h))]
        s = score_image("card", found, truth)
        return s.detected, s.matched

    (wide_found, wide_matched), (found, matched) = score(wide, 4056, 3040), score(detector, 2592, 1944)
    # the same insects matched; the strips' seams fall elsewhere on the two cards, and a faint thing
    # near one (a 938-pixel speck at 1296) may go either way
    assert wide_matched == matched and abs(wide_found - found) <= 1
    assert score(detector, 4056, 3040)[1] != matched
    with pytest.raises(ConfigError, match=r"detector\.max_side"):
        config_from_mapping({"detector": {"type": "learned", "max_side": 100}}, environ={})


def test_strips_give_the_maps_of_the_whole_picture(detector: LearnedDetector) -> None:
    card = read_annotated_svg(CROP)
    bgr = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    work = np.vstack([bgr, bgr[::-1]])[:, :640]  # 1536 rows: five strips of 512 (256 and context)
    assert detector.settings.strip_rows == 256
    whole = LearnedDetector(runtime="opencv")
    whole.settings = replace(whole.settings, strip_rows=0)
    striped = LearnedDetector(runtime="opencv")
    net = striped._net
    shapes: list[tuple[int, ...]] = []

    def recording(blob: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        shapes.append(blob.shape)
        return net(blob)

    striped._net = recording
    for a, b in zip(striped.maps(work), whole.maps(work), strict=True):
        assert a.shape == b.shape == (1536, 640)
        assert np.abs(a - b).max() < 0.05
    # one input size (the runtime keeps one set of buffers), five strips for each view
    assert shapes == [(1, 6, 512, 640)] * 5 * striped.settings.views


@pytest.mark.parametrize("h", [513, 972, 973, 1520, 1536, 3040])
def test_strips_cover_the_picture_with_context_on_each_side(h: int) -> None:
    window = 256 + 2 * STRIP_OVERLAP
    pieces = strips(h, 256, 2)
    assert len(pieces) > 1 and all(a % 2 == 0 for a, _, _, _ in pieces)
    sizes = [b - a for a, b, _, _ in pieces]
    assert sizes == [window] * (len(pieces) - 1) + [window + h % 2]  # odd: the last one row more
    assert pieces[0][0] == pieces[0][2] == 0 and pieces[-1][1] == h and pieces[-1][3] == -(-h // 2)
    for (_, b, _, bottom), (next_a, _, next_top, _) in itertools.pairwise(pieces):
        assert bottom == next_top  # every output row from one strip
        assert 2 * next_top - next_a >= STRIP_OVERLAP and b - 2 * bottom >= STRIP_OVERLAP
    assert strips(h, 0, 2) == [(0, h, 0, -(-h // 2))]  # no strips: the whole picture
    assert strips(window, 256, 2) == [(0, window, 0, window // 2)]  # one window holds it


def viewing(views: int) -> LearnedDetector:
    return LearnedDetector(runtime="opencv", views=views)


@pytest.mark.parametrize("views", [1, 2, 4])
def test_views_turn_and_mirror_the_maps_with_the_picture(views: int) -> None:
    """The maps of several views are their mean, each turned back: a picture turned half way round
    (and with 4 views, mirrored) gives the same maps turned; one view does not."""
    card = read_annotated_svg(CROP)
    bgr = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    work = cv2.resize(bgr, (512, 384), interpolation=cv2.INTER_AREA)
    det = viewing(views)
    axes_kept = {1: [], 2: [(0, 1)], 4: [(0, 1), (0,), (1,)]}[views]
    for axes in [(0, 1), (1,)]:
        turned = det.maps(np.ascontiguousarray(np.flip(work, axes)))
        same = all(
            np.allclose(np.flip(a, axes), b, atol=1e-6) for a, b in zip(det.maps(work), turned, strict=True)
        )
        assert same == (axes in axes_kept), (views, axes)


def test_views_of_a_picture_with_odd_sides_are_its_size_and_turned_back() -> None:
    card = read_annotated_svg(CROP)
    bgr = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    work = cv2.resize(bgr, (511, 383), interpolation=cv2.INTER_AREA)
    one, two = viewing(1).maps(work), viewing(2).maps(work)
    for a, b in zip(one, two, strict=True):
        assert a.shape == b.shape == (384, 512)
        assert np.abs(a - b)[:383, :511].mean() < 0.02  # the turned view not turned back: 0.07


def test_undecodable_jpeg_raises(detector: LearnedDetector) -> None:
    with pytest.raises(DetectorError):
        detector.detect(b"\xff\xd8 not really a jpeg")


@pytest.mark.skipif(not has_onnxruntime, reason="onnxruntime not installed")
def test_onnxruntime_and_opencv_agree(detector: LearnedDetector) -> None:
    card = read_annotated_svg(CROP)
    bgr = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    work = cv2.resize(bgr, (512, 384), interpolation=cv2.INTER_AREA)
    fast = LearnedDetector(runtime="onnxruntime")
    for a, b in zip(detector.maps(work), fast.maps(work), strict=True):
        assert np.abs(a - b).max() < 1e-3


def test_config_and_make_detector(tmp_path: Path) -> None:
    det = make_detector(LearnedDetectorConfig(type="learned", runtime="opencv"))
    assert det.name == "sticky-agent-learned" and det.version == load_model()[2]
    cfg = config_from_mapping({"detector": {"type": "learned"}}, environ={})
    assert cfg.detector == LearnedDetectorConfig(type="learned", model=None, runtime="auto")
    lonely = tmp_path / "m.onnx"
    lonely.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"detector\.model: no settings file"):
        config_from_mapping({"detector": {"type": "learned", "model": str(lonely)}}, environ={})
    with pytest.raises(ConfigError, match=r"detector\.runtime"):
        config_from_mapping({"detector": {"type": "learned", "runtime": "gpu"}}, environ={})
    with pytest.raises(ConfigError, match=r"detector\.views"):
        config_from_mapping({"detector": {"type": "learned", "views": 3}}, environ={})
    one = config_from_mapping({"detector": {"type": "learned", "runtime": "opencv", "views": 1}}, environ={})
    assert make_detector(one.detector).settings.views == 1  # type: ignore[union-attr]
    with pytest.raises(DetectorError, match="views must be one of 1, 2, 4, not 3"):
        LearnedDetector(runtime="opencv", views=3)


def test_cli_eval_reports_iou_033_and_run_draws_an_overlay(tmp_path: Path) -> None:
    r = run_stickyctl("detect", "eval", "--runtime", "opencv", str(CROP))
    assert r.returncode == 0, r.stderr
    assert "F1@0.33" in r.stdout and "F1@0.5" in r.stdout and "F1@0.25" in r.stdout
    assert "sticky-agent-learned" in r.stdout
    jpg = tmp_path / "card.jpg"
    jpg.write_bytes(on_a_card(2592, 1944))
    out = tmp_path / "overlay.jpg"
    r = run_stickyctl("detect", "run", "--overlay", str(out), str(jpg))
    assert r.returncode == 0, r.stderr
    assert re.search(r"card.jpg: \d+ insects", r.stdout), r.stdout
    drawn = cv2.imread(str(out))
    assert drawn.shape == (1944, 2592, 3)
    assert (np.abs(drawn.astype(int) - (255, 0, 255)).sum(axis=2) < 90).sum() > 200  # magenta outlines


def test_min_confidence_drops_the_insects_the_network_is_unsure_of() -> None:
    mask = np.zeros((60, 120), np.float32)
    centre = np.zeros_like(mask)
    for x, sure in ((30, 0.95), (90, 0.6)):  # two blobs: a confident one and a doubtful one
        cv2.circle(mask, (x, 30), 12, sure, -1)
        cv2.circle(centre, (x, 30), 5, 0.8, -1)
    s = Settings(created=1, mask_threshold=0.5, centre_threshold=0.2)
    assert len(np.unique(regions(mask, centre, s))) == 3  # background and both insects
    kept = regions(mask, centre, replace(s, min_confidence=0.8))
    assert np.unique(kept).tolist() == [0, 1] and kept[30, 30] == 1 and kept[30, 90] == 0


@pytest.mark.skipif(not has_torch, reason="the [train] extra (torch) is not installed")
def test_batchnorm_folds_into_the_exported_convolutions(tmp_path: Path) -> None:
    import onnx
    import torch

    from agent.detect.net import InsectNet, export_onnx

    torch.manual_seed(0)
    net = InsectNet(norm=True)
    net.train()
    with torch.no_grad():  # running statistics away from their defaults
        for _ in range(3):
            net(torch.randn(2, 3, 64, 64) * 0.3 + 0.1)
    export_onnx(net, tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    ocv = cv2.dnn.readNetFromONNX(str(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 3, 64, 96)).astype(np.float32)
    ocv.setInput(x)
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(ocv.forward() - want).max() < 1e-3


@pytest.mark.skipif(not has_torch, reason="the [train] extra (torch) is not installed")
@pytest.mark.parametrize("stride", [1, 2])
def test_both_output_strides_export_and_give_maps_at_the_working_size(tmp_path: Path, stride: int) -> None:
    import torch

    from agent.detect.net import InsectNet, export_onnx

    torch.manual_seed(0)
    net = InsectNet(norm=True, channels=6, stride=stride).eval()
    export_onnx(net, tmp_path / "m.onnx", 6)
    settings_path(tmp_path / "m.onnx").write_text(
        json.dumps({"created": 1, "normalise": 2, "output_stride": stride, "upsample": stride})
    )
    det = LearnedDetector(tmp_path / "m.onnx", runtime="opencv")
    work = np.full((300, 420, 3), (40, 200, 220), np.uint8)
    mask, centre = det.maps(work)
    assert mask.shape == centre.shape == (300, 420)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 6, 64, 96)).astype(np.float32)
    ocv = cv2.dnn.readNetFromONNX(str(tmp_path / "m.onnx"))
    ocv.setInput(x)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert want.shape == (1, 2, 64 // stride, 96 // stride)
    assert np.abs(ocv.forward() - want).max() < 1e-3


@pytest.mark.skipif(not has_torch, reason="the [train] extra (torch) is not installed")
def test_a_trained_network_exports_to_onnx_that_opencv_runs(tmp_path: Path) -> None:
    import torch

    from agent.detect.cards import load_card
    from agent.detect.net import InsectNet, export_onnx
    from agent.detect.train import CHANNELS, STRIDE, train_model

    card = load_card(CROP, full_side=2592)
    assert card.mask.shape == (384, 512) and card.mask.max() == 1.0
    assert card.centre.min() >= 0.0 and card.centre.max() == pytest.approx(1.0)
    net = train_model([card], steps=2, seed=1)
    assert isinstance(net, InsectNet)
    export_onnx(net, tmp_path / "m.onnx", CHANNELS)
    ocv = cv2.dnn.readNetFromONNX(str(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, CHANNELS, 96, 160)).astype(np.float32)
    ocv.setInput(x)
    got = ocv.forward()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (1, 2, 96 // STRIDE, 160 // STRIDE)
    assert np.abs(got - want).max() < 1e-3

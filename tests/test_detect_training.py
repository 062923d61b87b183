"""What the learned detector's training and scoring rest on, without torch: the network's input
(the card divided by its local background), real insects pasted onto other cards with their
targets, and the leave-one-trap-out choice of settings that never looks at the trap scored."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from agent.detect import cards
from agent.detect.cards import Card, _paste, _writing, insect_bank, load_card, patch, unoutlined
from agent.detect.evaluate import THRESHOLDS, Score
from agent.detect.learned import (
    DEFAULT_MODEL,
    background_rows,
    card_colour,
    coarse_background,
    input_blob,
    local_background,
    settings_path,
)
from agent.detect.loto import choose

CROP = REPO / "tests" / "data" / "detect" / "5595c586.2020-08-31_18-47-19.crop.svg"


def shaded_card() -> np.ndarray:  # type: ignore[type-arg]
    """A 480 x 640 yellow card, dark on the left (a shadow), with one dark 12-pixel insect."""
    img = np.empty((480, 640, 3), np.float32)
    img[:] = (40, 200, 220)
    img *= (0.5 + 0.5 * np.linspace(0, 1, 640, dtype=np.float32))[None, :, None]
    img[300:312, 100:112] = (20, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_local_background_follows_the_shade_and_ignores_the_insect() -> None:
    card = shaded_card()
    bg = local_background(card)
    assert bg.shape == card.shape
    ratio = card.astype(np.float32)[..., 1] / bg[..., 1]
    assert np.abs(ratio[50:250, 50:600] - 1).max() < 0.08  # the shade divides away
    assert ratio[306, 106] < 0.3  # the insect stays dark


def test_the_input_has_three_or_six_channels() -> None:
    card = shaded_card()
    assert input_blob(card, 0).shape == input_blob(card, 1).shape == (1, 3, 480, 640)
    six = input_blob(card, 2)
    assert six.shape == (1, 6, 480, 640) and six.dtype == np.float32
    assert six[0, 4, 306, 106] < -0.7 and abs(float(six[0, 4, 100, 300])) < 0.08
    assert six[0, 3:].min() >= -1 and six[0, 3:].max() <= 2


@pytest.fixture(scope="module")
def crop_card() -> Card:
    return load_card(CROP, full_side=2592)


def test_every_outlined_insect_goes_into_the_bank(crop_card: Card) -> None:
    bank = insect_bank([crop_card])
    assert len(bank) == len(crop_card.outlines) == 11
    for crop in bank:
        assert crop.image.shape[:2] == crop.alpha.shape == crop.centre.shape
        assert crop.alpha.max() == 1 and crop.centre.max() == pytest.approx(1.0)
        # the card around: its median, away from the insect (these pale insects are 3 to 50 darker)
        assert crop.image[crop.alpha > 0].mean(axis=1).min() < crop.card.mean() - 2


def test_pasted_insects_are_in_the_targets(crop_card: Card) -> None:
    bank = insect_bank([crop_card])
    rng = np.random.default_rng(5)
    pasted = 0
    for _ in range(10):
        blank = np.full((192, 192, 3), (40, 200, 220), np.uint8)
        img, mask, centre = blank.copy(), np.zeros((192, 192), np.float32), np.zeros((192, 192), np.float32)
        _paste(img, mask, centre, bank, rng)
        inside = mask > 0.5
        pasted += int(inside.any())
        changed = (img != blank).any(axis=2)
        near = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert not (changed & ~near).any()  # nothing drawn outside the pasted outlines
        assert (centre[~inside] == 0).all() and (centre[inside] > 0).mean() > 0.8
        assert changed[inside].mean() > 0.9
    assert pasted == 10


def test_faint_pasted_insects_are_lighter_but_still_insects(
    crop_card: Card, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAINT of the pasted insects are made see-through, towards the card or a light grey: lighter
    than the insects they were (darker than the card), and their targets the same whole insects."""
    bank = insect_bank([crop_card])
    blank = np.full((192, 192, 3), (40, 200, 220), np.uint8)

    def lightness_and_area(faint: float) -> tuple[float, int]:
        monkeypatch.setattr(cards, "FAINT", faint)
        rng = np.random.default_rng(5)
        grey, area = [], 0
        for _ in range(20):
            img, mask = blank.copy(), np.zeros((192, 192), np.float32)
            _paste(img, mask, mask.copy(), bank, rng)
            inside = mask > 0.5
            grey.append(img[inside].mean(axis=1))
            area += int(inside.sum())
        return float(np.concatenate(grey).mean()), area

    plain, plain_area = lightness_and_area(0.0)
    faint, faint_area = lightness_and_area(1.0)
    assert plain < blank.mean() - 2 and faint > plain + 4, (plain, faint)  # measured 149.4, 155.6
    assert faint_area > 0.5 * plain_area  # as many insects to find


def test_training_patches_keep_their_shapes(crop_card: Card) -> None:
    rng = np.random.default_rng(1)
    bank = insect_bank([crop_card])
    for _ in range(8):
        img, mask, centre = patch(crop_card, 160, rng, bank)
        assert img.shape == (160, 160, 3) and img.dtype == np.uint8
        assert mask.shape == centre.shape == (160, 160) and mask.dtype == centre.dtype == np.float32
        assert mask.min() >= 0 and mask.max() <= 1 and centre.max() <= 1


def test_hard_negatives_are_the_regions_found_outside_peoples_outlines() -> None:
    mask = np.zeros((200, 300), np.float32)
    mask[20:60, 20:60] = 1  # an outlined insect
    found = np.zeros((200, 300), bool)
    found[25:65, 25:65] = True  # found, mostly inside the outline: not a hard negative
    found[100:120, 200:230] = True  # found where people outlined nothing
    found[150:153, 10:13] = True  # too small to matter
    centres = unoutlined(found, mask)
    assert centres.shape == (1, 2)
    assert centres[0] == pytest.approx((214.5, 109.5))
    assert unoutlined(np.zeros((200, 300), bool), mask).shape == (0, 2)


def test_patches_not_on_an_insect_go_to_the_hard_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a large card with no outline, a patch centred at random rarely holds the one marked spot;
    with the spot as a hard negative (and every such patch sent there) nearly all do."""
    h, w = 1200, 1600
    image = np.full((h, w, 3), (40, 200, 220), np.uint8)
    spot = np.zeros((h, w), np.float32)
    spot[890:910, 1290:1310] = 1  # where the patches' targets show it (a card's targets are its own)
    card = Card("c", "t", image, spot, spot.copy(), [], b"", 2 * w)
    monkeypatch.setattr(cards, "HARD", 1.0)

    def holding(hard: np.ndarray | None) -> int:  # type: ignore[type-arg]
        rng = np.random.default_rng(3)
        return sum(patch(card, 160, rng, None, hard)[1].max() > 0.5 for _ in range(40))

    assert holding(None) <= 4
    assert holding(np.array([[1300.0, 900.0]], np.float32)) >= 34  # a few are blank-card patches


def _score(matched: int, truth: int = 10) -> Score:
    return Score("c", truth, 10, dict.fromkeys(THRESHOLDS, matched), 0)


def test_settings_for_a_trap_are_chosen_without_its_cards() -> None:
    # combination 0 is perfect on trap "a" and poor elsewhere; combination 1 the other way round
    scores = [[_score(10), _score(2), _score(2)], [_score(0), _score(8), _score(8)]]
    traps = ["a", "b", "c"]
    assert choose(scores, traps, "a") == 1  # trap a's own cards never vote for its settings
    assert choose([[_score(10), _score(2)], [_score(0), _score(3)]], ["a", "b"], None) == 0


def test_rescore_scores_kept_held_out_models_leave_one_trap_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import agent.detect.loto as loto
    from agent.detect import train

    kept = tmp_path / "kept"
    kept.mkdir()
    for trap in ("0a5bb6f4", "1b74105a"):  # the shipped model stands in for each fold's
        shutil.copy(DEFAULT_MODEL, kept / f"{trap}.onnx")
        shutil.copy(settings_path(DEFAULT_MODEL), kept / f"{trap}.json")
    grid = {
        "mask_threshold": (0.5,),
        "centre_threshold": (0.1,),
        "min_confidence": (0.0, 0.99),
        "min_area": (300.0,),
    }
    monkeypatch.setattr(loto, "GRID", grid)
    monkeypatch.setattr(train, "GRID", grid)
    assert (
        train.main([str(REPO / "tests" / "data" / "annotated"), "--rescore", str(kept), "--jobs", "1"]) == 0
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "2 cards from 2 traps, 105 insects"
    assert lines[1].split()[:4] == ["trap", "card", "people", "found"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"0a5bb6f4", "1b74105a", "all"}
    assert rows["0a5bb6f4"][2:4][0] == "87" and rows["1b74105a"][2] == "18"
    # min_confidence 0.99 finds nothing, so each trap's choice, made on the other's cards, is 0
    assert (
        "held out 0a5bb6f4: mask_threshold 0.5, centre_threshold 0.1, min_confidence 0, min_area 300" in err
    )
    assert int(rows["all"][4]) > 0


def test_label_writing_is_drawn_under_the_insects_never_over_them() -> None:
    rng = np.random.default_rng(2)
    insects = np.zeros((224, 224), np.float32)
    insects[60:160, 60:160] = 1  # one big insect in the middle
    written = 0
    for _ in range(10):
        card = np.full((224, 224, 3), (40, 200, 220), np.uint8)
        img = card.copy()
        _writing(img, rng, insects)
        changed = (img != card).any(axis=2)
        assert not changed[insects > 0].any()
        written += int(changed.sum() > 100)
    assert written >= 8  # label writing (thick, dark) on most patches


@pytest.mark.parametrize("normalise", [0, 1, 2])
def test_the_trap_builds_the_same_input_strip_by_strip_as_training_does(normalise: int) -> None:
    card = shaded_card()[:470, :610]  # not multiples of 32: mirrored padding
    colour = card_colour(card) if normalise else None
    coarse = coarse_background(card)
    want = input_blob(card, normalise)  # as training builds a patch's: everything from the picture
    whole = input_blob(card, normalise, colour, background_rows(coarse, (610, 470), (0, 470)))
    assert whole.shape == want.shape == (1, 6 if normalise == 2 else 3, 480, 640)
    assert np.abs(whole - want).max() < 1e-5
    strip = input_blob(card[100:300], normalise, colour, background_rows(coarse, (610, 470), (100, 300)))
    assert np.abs(strip[..., :200, :610] - want[..., 100:300, :610]).max() < 1e-5


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the [train] extra (torch) is not installed"
)
def test_the_model_in_training_finds_its_hard_negatives_and_goes_on_training() -> None:
    import torch

    from agent.detect.train import STRIDE, hard_negatives

    h, w = 96, 128
    mask = np.zeros((h, w), np.float32)
    mask[10:30, 10:30] = 1  # people's insect
    card = Card("c", "t", np.full((h, w, 3), (40, 200, 220), np.uint8), mask, mask.copy(), [], b"", 2 * w)

    class Net:  # finds people's insect and, 40 pixels to its right, one they did not outline
        training = True

        def eval(self) -> None:
            self.training = False

        def train(self) -> None:
            self.training = True

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            assert not self.training and x.shape[1] == 6
            out = torch.full((1, 2, x.shape[2] // STRIDE, x.shape[3] // STRIDE), -5.0)
            out[0, 0, 10 // STRIDE : 30 // STRIDE, 10 // STRIDE : 30 // STRIDE] = 5
            out[0, 0, 10 // STRIDE : 30 // STRIDE, 50 // STRIDE : 70 // STRIDE] = 5
            return out

    net = Net()
    centres = hard_negatives(net, card)
    assert net.training
    assert centres.tolist() == [[59.5, 19.5]]

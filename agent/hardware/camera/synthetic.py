"""The ``synthetic`` camera: renders a flash-lit yellow sticky card with insects on it.

A few insects are on the card from the start; before each later capture,
Poisson(``insects_per_capture``) more land, and none ever moves. The picture is
deterministic: the same seed and capture index give the same JPEG bytes (with the
same numpy and Pillow). The capture index counts captures across ``close``/``open``,
and across runs when the camera is given the data folder (:mod:`agent.hardware.camera.position`).

Light enough for a Pi Zero 2 W: smooth fields (card tint, flash hotspot, vignetting,
glare) are computed at 1/16 scale and upscaled by Pillow, insects are drawn as small
supersampled patches, and noise is added in row bands, so a 12 MP frame needs about
one full-size 8-bit image of memory.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter
from pydantic import Field

from agent.errors import CameraError
from agent.hardware.camera import CameraSettings, Frame, Lighting, no_lighting
from agent.hardware.camera.position import Position, position_file
from agent.lazy import lazy_import, require
from agent.registry import register

if TYPE_CHECKING:
    import numpy as np
else:  # numpy is an extra: imported when a synthetic camera is made, not with the config
    np = lazy_import("numpy", globals(), "np")

_REF_WIDTH = 4056  # insect lengths (6-80 px) are given at this frame width
_FIELD_SCALE = 16  # smooth fields are computed at 1/16 of the frame size
_BAND_ROWS = 256  # noise is added this many rows at a time
_NOISE_SIGMA = 2.8
#: The simulated lens is sharp here (dioptres), and blurs this many pixels (at 4056 wide)
#: per dioptre away from it.
FOCUS_DIOPTRES = 4.0
BLUR_PER_DIOPTRE = 6.0
# One independent random stream per purpose: (seed, tag[, index]).
_CARD, _ARRIVALS, _INSECT, _CAPTURE = 0, 1, 2, 3
# Maps a uniform random byte to 128 + Gaussian noise (Pillow ``point`` table, R, G, B).
_NOISE_LUT = [
    min(255, max(0, round(128 + _NOISE_SIGMA * NormalDist().inv_cdf((i + 0.5) / 256)))) for i in range(256)
] * 3

_Rgb = tuple[int, int, int]
_Point = tuple[float, float]


@dataclass(frozen=True)
class _Insect:
    x: float  # centre, as fractions of the frame's width and height
    y: float
    length: float  # pixels at _REF_WIDTH
    aspect: float  # body width / body length
    angle: float  # radians
    colour: tuple[float, float, float]  # reflectance, 0-255
    wings: float  # wing opacity; 0: no visible wings
    spread: float  # wing angle from the body axis, radians
    legs: bool


def _make_insect(seed: int, index: int) -> _Insect:
    """Given a seed and an insect's index, return that insect (always the same one)."""
    rng = np.random.default_rng([seed, _INSECT, index])
    length = 6.0 * (80.0 / 6.0) ** (rng.random() ** 1.7)  # mostly small ones
    dark = rng.uniform(18, 95)
    colour = (dark, dark * rng.uniform(0.62, 0.85), dark * rng.uniform(0.3, 0.55))
    return _Insect(
        x=float(rng.uniform(0.03, 0.97)),
        y=float(rng.uniform(0.03, 0.97)),
        length=float(length),
        aspect=float(rng.uniform(0.22, 0.45)),
        angle=float(rng.uniform(0, 2 * math.pi)),
        colour=(float(colour[0]), float(colour[1]), float(colour[2])),
        wings=float(rng.uniform(0.25, 0.55)) if rng.random() < 0.65 else 0.0,
        spread=float(rng.uniform(0.15, 0.7)),
        legs=bool(length > 12 and rng.random() < 0.75),
    )


def _smooth(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Given a grid (rows, cols) and a size (w, h), return smooth N(0,1)-ish float32 noise."""
    coarse = Image.fromarray(rng.standard_normal(grid).astype(np.float32), "F")
    return np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


class SyntheticCameraConfig(CameraSettings):
    """``[camera] type = "synthetic"``: a rendered sticky card (needs numpy: the ``dev`` extra)."""

    type: Literal["synthetic"]
    width: int = Field(default=4056, ge=64, le=10000)
    height: int = Field(default=3040, ge=48, le=10000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    #: Mean number of insects that land on the card between two captures.
    insects_per_capture: float = Field(default=0.5, ge=0, le=1000)
    sensor: str = "synthetic"
    #: Defocus: Gaussian blur radius in pixels at 4056 wide (0: sharp). The simulated lens
    #: (set from the web page's focus control) adds to it away from its in-focus position.
    blur: float = Field(default=0.0, ge=0, le=200)


@register("camera", SyntheticCameraConfig)
class SyntheticCamera:
    """Given a synthetic-camera config, render one sticky-card picture per capture.
    Raise ImportError (name ``numpy``) if numpy is not installed."""

    def __init__(self, config: SyntheticCameraConfig, state_dir: Path | None = None) -> None:
        require(np)
        self.width = config.width
        self.height = config.height
        self.sensor = config.sensor
        self._seed = config.seed % 2**64
        self._rate = config.insects_per_capture
        self._config = config
        #: The simulated lens, in dioptres (like Camera Module 3's ``LensPosition``): sharp at
        #: FOCUS_DIOPTRES, blurrier the further from it (plus the configured ``blur``).
        self.lens_position = FOCUS_DIOPTRES
        self._twin: SyntheticCamera | None = None  # renders the web page's low-resolution preview
        self._open = False
        self._insects: list[_Insect] = []
        self._landed: list[int] = []  # insects on the card at capture k
        identity = {"type": "synthetic", "seed": config.seed, "width": self.width, "height": self.height}
        self._position = Position(position_file(state_dir), identity | {"rate": self._rate})
        saved = self._position.load().get("captures", 0)
        #: Captures delivered so far (also the index of the next capture), across runs.
        self.captures = saved if isinstance(saved, int) and 0 <= saved < 10**9 else 0
        #: Insects on the card in the last frame delivered.
        self.insects_on_card = 0
        self._card()

    def _card(self) -> None:
        """Compute the per-seed card: tint, flash field, glare, exposure, dust."""
        rng = np.random.default_rng([self._seed, _CARD])
        fw, fh = -(-self.width // _FIELD_SCALE) + 1, -(-self.height // _FIELD_SCALE) + 1
        base = np.array([220, 200, 40], np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
        blotch = 0.022 * _smooth(rng, (5, 7), (fw, fh)) + 0.01 * _smooth(rng, (24, 32), (fw, fh))
        self._albedo = base * (1 + blotch)[..., None]
        ys, xs = np.mgrid[-1 : 1 : fh * 1j, -1 : 1 : fw * 1j].astype(np.float32)
        xs *= self.width / self.height
        vignette = 1 / (1 + 0.11 * (xs**2 + ys**2)) ** 2
        hx, hy = rng.uniform(0.15, 0.45) * rng.choice([-1, 1]), rng.uniform(-0.35, 0.35)
        d2 = (xs - hx) ** 2 + (ys - hy) ** 2
        self._illum = vignette * (1 + rng.uniform(0.18, 0.3) * np.exp(-d2 / rng.uniform(0.4, 0.8)))
        gx, gy = hx + rng.uniform(-0.1, 0.1), hy + rng.uniform(-0.1, 0.1)
        g2 = ((xs - gx) / 1.6) ** 2 + (ys - gy) ** 2  # glossy glue: a stretched reflection
        self._glare = rng.uniform(0.25, 0.45) * np.exp(-g2 / rng.uniform(0.004, 0.012))
        self._exposure_us = float(rng.uniform(12000, 24000))
        self._gain = float(rng.uniform(1.0, 1.6))
        scale = self.width / _REF_WIDTH
        n_dust = int(rng.integers(20, 45) * (self.width * self.height) / (_REF_WIDTH * 3040)) + 4
        self._dust = [
            (
                float(rng.uniform(0, self.width)),
                float(rng.uniform(0, self.height)),
                max(0.6, float(rng.uniform(0.5, 3.0)) * scale),
                float(rng.choice([rng.uniform(0.72, 0.9), rng.uniform(1.04, 1.1)])),
            )
            for _ in range(n_dust)
        ]

    def open(self) -> None:
        """Make the camera ready (nothing to acquire; the card is kept across re-opens)."""
        self._open = True

    def close(self) -> None:
        """Stop delivering frames; safe to call twice. Captures and insects are kept."""
        self._open = False

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        """Given a JPEG quality (1-100), return the next frame of the card; ``flash`` is lit
        while the card is rendered (the exposure), not while it is encoded.

        Raise CameraError if the camera is not open or the quality is out of range.
        """
        if not self._open:
            raise CameraError("synthetic camera: capture before open() (or after close())")
        if not 1 <= quality <= 100:
            raise CameraError(f"synthetic camera: JPEG quality must be 1-100, got {quality}")
        k = self.captures
        with flash():
            img, exposure, gain, n = self._expose(k)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        self.captures += 1
        self.insects_on_card = n
        self._position.save({"captures": self.captures})
        return Frame(
            jpeg=buf.getvalue(),
            width=self.width,
            height=self.height,
            sensor=self.sensor,
            exposure_us=round(exposure, 1),
            analogue_gain=round(gain, 3),
        )

    def _expose(self, k: int) -> tuple[Image.Image, float, float, int]:
        """Given a capture index, render the card: the image, exposure, gain and insect count."""
        rng = np.random.default_rng([self._seed, _CAPTURE, k])
        exposure = float(np.clip(self._exposure_us * (1 + 0.04 * rng.standard_normal()), 1e4, 3e4))
        gain = float(np.clip(self._gain * (1 + 0.02 * rng.standard_normal()), 1.0, 2.0))
        bright = math.sqrt(exposure * gain / (self._exposure_us * self._gain))
        field = self._albedo * (self._illum * bright)[..., None]
        field += self._glare[..., None] * (255 - field)
        low = np.clip(field, 0, 255).astype(np.uint8)
        img = Image.fromarray(low, "RGB").resize((self.width, self.height), Image.Resampling.BICUBIC)
        self._draw_dust(img, low)
        n = self._insects_at(k)
        for insect in self._insects[:n]:
            self._draw_insect(img, insect, low)
        blur = self.blur_px() * self.width / _REF_WIDTH
        if blur > 0.05:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        self._add_noise(img, rng)
        return img, exposure, gain, n

    def blur_px(self) -> float:
        """Return the defocus blur radius in pixels at 4056 wide (configured + lens)."""
        return self._config.blur + BLUR_PER_DIOPTRE * abs(self.lens_position - FOCUS_DIOPTRES)

    def set_lens_position(self, dioptres: float) -> None:
        """Move the simulated lens (0-15 dioptres, as Camera Module 3's)."""
        self.lens_position = float(min(15.0, max(0.0, dioptres)))

    def preview(self, width: int) -> Frame:
        """Given a width, return the card as it is now (as the last capture saw it) rendered
        that wide, without advancing the capture sequence. Raise CameraError if not open."""
        if not self._open:
            raise CameraError("synthetic camera: preview before open() (or after close())")
        height = max(48, round(width * self.height / self.width))
        twin = self._twin
        if twin is None or twin.width != width:
            twin = SyntheticCamera(self._config.model_copy(update={"width": width, "height": height}))
            self._twin = twin
        twin.lens_position = self.lens_position
        twin.captures = max(0, self.captures - 1)
        twin.open()
        frame = twin.capture(80)
        return Frame(
            frame.jpeg, frame.width, frame.height, self.sensor, frame.exposure_us, frame.analogue_gain
        )

    def _insects_at(self, k: int) -> int:
        """Given a capture index, return how many insects are on the card then."""
        while len(self._landed) <= k:
            j = len(self._landed)
            rng = np.random.default_rng([self._seed, _ARRIVALS, j])
            new = 3 + int(rng.poisson(2)) if j == 0 else int(rng.poisson(self._rate))
            self._landed.append((self._landed[-1] if self._landed else 0) + new)
        while len(self._insects) < self._landed[k]:
            self._insects.append(_make_insect(self._seed, len(self._insects)))
        return self._landed[k]

    def _local(self, low: np.ndarray, x: float, y: float) -> np.ndarray:
        """Given frame coordinates, return the card's rendered colour there (float32 RGB)."""
        fy = min(low.shape[0] - 1, max(0, round(y / _FIELD_SCALE)))
        fx = min(low.shape[1] - 1, max(0, round(x / _FIELD_SCALE)))
        return np.asarray(low[fy, fx], dtype=np.float32)

    def _draw_dust(self, img: Image.Image, low: np.ndarray) -> None:
        """Draw the seed's faint dust specks, a little darker or paler than the card."""
        draw = ImageDraw.Draw(img)
        for x, y, r, factor in self._dust:
            c = np.clip(self._local(low, x, y) * factor, 0, 255)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(int(c[0]), int(c[1]), int(c[2])))

    def _draw_insect(self, img: Image.Image, ins: _Insect, low: np.ndarray) -> None:
        """Draw one insect, lit like the card around it, as a supersampled patch."""
        length = max(3.0, ins.length * self.width / _REF_WIDTH)
        ss = 4 if length < 30 else 2
        half = math.ceil(0.7 * length) + 2
        cx, cy = ins.x * self.width, ins.y * self.height
        card = self._local(low, cx, cy)
        light = float(card.mean() / self._albedo.mean())
        patch = Image.new("RGBA", (2 * half * ss,) * 2, (*(int(v) for v in card), 0))
        draw = ImageDraw.Draw(patch)
        s, co, si = length * ss, math.cos(ins.angle), math.sin(ins.angle)

        def pt(u: float, v: float) -> _Point:
            return (half * ss + (u * co - v * si) * s, half * ss + (u * si + v * co) * s)

        def ellipse(u: float, v: float, a: float, b: float, rot: float = 0.0) -> list[_Point]:
            cr, sr, ts = math.cos(rot), math.sin(rot), np.linspace(0, 2 * math.pi, 24)
            ab = [(a * math.cos(t), b * math.sin(t)) for t in ts]
            return [pt(u + p * cr - q * sr, v + p * sr + q * cr) for p, q in ab]

        def lit(rgb: tuple[float, float, float], f: float = 1.0, alpha: int = 255) -> tuple[int, ...]:
            return (*(min(255, int(c * f * light)) for c in rgb), alpha)

        w, lw = ins.aspect, max(1, round(0.02 * s))
        if ins.wings:
            wing = lit((215, 215, 210), alpha=int(255 * ins.wings))
            edge = lit((120, 110, 80), alpha=int(200 * ins.wings))
            for side in (-1, 1):
                phi = math.pi - side * ins.spread
                u, v = 0.2 + 0.4 * math.cos(phi), side * 0.04 + 0.4 * math.sin(phi)
                draw.polygon(ellipse(u, v, 0.42, 0.09 + 0.08 * w, phi), fill=wing, outline=edge)
        if ins.legs:
            for side in (-1, 1):
                for u0, du in ((0.28, 0.2), (0.2, 0.02), (0.12, -0.22)):
                    knee = pt(u0 + du * 0.5, side * (0.2 + 0.1 * w))
                    foot = pt(u0 + du * 1.3, side * (0.3 + 0.1 * w))
                    draw.line([pt(u0, side * 0.05), knee, foot], fill=lit(ins.colour, 1.2), width=lw)
            for side in (-1, 1):
                draw.line([pt(0.44, side * 0.03), pt(0.62, side * 0.13)], fill=lit(ins.colour), width=lw)
        if length < 10:
            draw.polygon(ellipse(0, 0, 0.5, w / 2), fill=lit(ins.colour))
        else:
            draw.polygon(ellipse(-0.16, 0, 0.32, w / 2), fill=lit(ins.colour, 1.15))
            draw.polygon(ellipse(0.2, 0, 0.14, w * 0.44), fill=lit(ins.colour))
            draw.polygon(ellipse(0.4, 0, 0.08, w * 0.36), fill=lit(ins.colour, 0.8))
            draw.polygon(ellipse(0.21, -0.02, 0.06, 0.025, 0.3), fill=(255, 250, 235, 40))
        small = patch.reduce(ss).filter(ImageFilter.GaussianBlur(0.35 * max(1.0, length / 40)))
        img.paste(small, (round(cx) - half, round(cy) - half), small)

    def _add_noise(self, img: Image.Image, rng: np.random.Generator) -> None:
        """Add Gaussian sensor noise in row bands (keeps peak memory low)."""
        for y0 in range(0, self.height, _BAND_ROWS):
            rows = min(_BAND_ROWS, self.height - y0)
            noise = Image.frombytes("RGB", (self.width, rows), rng.bytes(self.width * rows * 3))
            box = (0, y0, self.width, y0 + rows)
            img.paste(ImageChops.add(img.crop(box), noise.point(_NOISE_LUT), 1.0, -128), box)

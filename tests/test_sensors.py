"""The hat's sensors: climate through a fake IIO sysfs tree, the battery through a fake or
gpiozero-mocked MCP3001, and no sensor failure ever costs a capture."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import LED, MCP3001, Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice
from helpers.sensors import FakeAdc, Sleeps, hat, iio_device
from hypothesis import given
from hypothesis import strategies as st
from stickypi_spec import parse_image

from agent.config import HatSensorsConfig, load_config
from agent.hardware.iio import find_device, read_channel
from agent.hardware.sensors import (
    LIPO_CURVE,
    Battery,
    HatSensors,
    Readings,
    lipo_level,
    make_sensors,
    read_safely,
)
from agent.service import Pipeline


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int, int], None]:
    """Make reads of files named ``name`` fail with ``err`` for the next ``times`` reads (-1: always)."""
    failures: dict[str, list[int]] = {}
    real_read_text = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name in failures:
            err, left = failures[self.name]
            if left != 0:
                failures[self.name][1] = left - 1
                raise OSError(err, f"{errno.errorcode[err]} reading {self}")
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)

    def make(name: str, err: int, times: int) -> None:
        failures[name] = [err, times]

    return make


# --- climate through IIO ------------------------------------------------------------------


def test_dht22_reads_through_the_dht11_driver(tmp_path: Path) -> None:
    iio_device(tmp_path, 0, "mcp3422", in_voltage0_raw=12)
    iio_device(tmp_path, 1, "dht11", in_temp_input=21300, in_humidityrelative_input=45600)
    sensors = HatSensors(hat(tmp_path, climate="dht22"))
    assert sensors.read() == Readings(21.3, 45.6, None)
    assert sensors.failures == {}


def test_bme280_reads_temperature_humidity_and_pressure(tmp_path: Path) -> None:
    device = iio_device(
        tmp_path, 0, "bme280", in_temp_input=23450, in_humidityrelative_input=51234, in_pressure_input=100.8
    )
    assert HatSensors(hat(tmp_path, climate="bme280")).read() == Readings(23.45, 51.234, None)
    assert read_channel(device, "pressure") == 100.8


def test_raw_channels_are_offset_and_scaled(tmp_path: Path) -> None:
    iio_device(
        tmp_path,
        0,
        "bme280",
        in_temp_raw=2395,
        in_temp_offset=-50,
        in_temp_scale=10,
        in_humidityrelative_raw=512,
        in_humidityrelative_scale=97.65625,
    )
    readings = HatSensors(hat(tmp_path, climate="bme280")).read()
    assert readings == Readings(23.45, 50.0, None)


def test_a_bmp280_has_no_humidity(tmp_path: Path) -> None:
    iio_device(tmp_path, 0, "bmp280", in_temp_input=19000, in_pressure_input=99.1)
    assert HatSensors(hat(tmp_path, climate="bme280")).read() == Readings(19.0, None, None)


@pytest.mark.parametrize("err", [errno.EIO, errno.ETIMEDOUT])
def test_dht_read_errors_are_retried(
    tmp_path: Path, flaky: Callable[[str, int, int], None], err: int
) -> None:
    iio_device(tmp_path, 0, "dht11", in_temp_input=18000, in_humidityrelative_input=70000)
    flaky("in_temp_input", err, 2)
    sleeps = Sleeps()
    sensors = HatSensors(hat(tmp_path, climate_attempts=3, climate_retry_delay=1.5), sleep=sleeps)
    assert sensors.read() == Readings(18.0, 70.0, None)
    assert sleeps.calls == [1.5, 1.5]
    assert sensors.failures == {}


def test_a_dht_that_keeps_failing_gives_unknowns_and_a_counted_warning(
    tmp_path: Path, flaky: Callable[[str, int, int], None], caplog: pytest.LogCaptureFixture
) -> None:
    iio_device(tmp_path, 0, "dht11", in_temp_input=18000, in_humidityrelative_input=70000)
    flaky("in_temp_input", errno.EIO, -1)
    sleeps = Sleeps()
    sensors = HatSensors(hat(tmp_path, climate_attempts=4), sleep=sleeps)
    with caplog.at_level(logging.WARNING, logger="agent.hardware.sensors"):
        first = sensors.read()
        second = sensors.read()
    assert (first.temperature, first.humidity) == (None, None)
    assert first.errors and first.errors[0].startswith("climate: OSError: [Errno 5]")
    assert second.temperature is None
    assert sensors.failures["climate"] == 2
    assert len(sleeps.calls) == 2 * 3  # three waits between four attempts, per read
    assert "climate (dht22) sensor failed (2 failures since start)" in caplog.text
    readings, error = read_safely(sensors)
    assert readings.temperature is None and error is not None and "Errno 5" in error


def test_a_missing_device_is_unknown_at_once(tmp_path: Path) -> None:
    sleeps = Sleeps()
    sensors = HatSensors(hat(tmp_path / "no-such-tree"), sleep=sleeps)
    readings = sensors.read()
    assert readings.temperature is None and readings.humidity is None
    assert "no IIO device named dht11 or dht22" in readings.errors[0]
    assert sleeps.calls == []  # retrying cannot make a device appear
    assert sensors.failures["climate"] == 1


def test_an_implausible_value_is_retried_then_unknown(tmp_path: Path) -> None:
    iio_device(tmp_path, 0, "dht11", in_temp_input=150000, in_humidityrelative_input=40000)
    sleeps = Sleeps()
    readings = HatSensors(hat(tmp_path, climate_attempts=2), sleep=sleeps).read()
    assert readings.temperature is None and "implausible temperature 150" in readings.errors[0]
    assert sleeps.calls == [2.0]


def test_a_device_that_appears_later_is_found(tmp_path: Path) -> None:
    sensors = HatSensors(hat(tmp_path), sleep=Sleeps())
    assert sensors.read().temperature is None
    iio_device(tmp_path, 3, "dht11", in_temp_input=-5300, in_humidityrelative_input=99900)
    assert sensors.read() == Readings(-5.3, 99.9, None)
    assert find_device(tmp_path, ["dht11"]) == tmp_path / "iio:device3"


def test_climate_none_reads_nothing(tmp_path: Path) -> None:
    sensors = HatSensors(hat(tmp_path, climate="none"))
    assert sensors.read() == Readings()
    assert sensors.failures == {}


# --- battery --------------------------------------------------------------------------------


def test_battery_level_from_the_adc_divider_and_curve(tmp_path: Path) -> None:
    adc = FakeAdc(0.6)  # 0.6 * 3.3 V * 2 = 3.96 V
    sensors = HatSensors(hat(tmp_path, climate="none", battery=True), adc=adc)
    assert sensors.battery is not None
    assert sensors.battery.voltage() == pytest.approx(3.96)
    assert sensors.read() == Readings(None, None, 72.0)
    sensors.close()
    assert adc.closed


def test_a_failing_adc_gives_unknown_battery_but_keeps_the_climate(tmp_path: Path) -> None:
    iio_device(tmp_path, 0, "dht11", in_temp_input=20000, in_humidityrelative_input=50000)
    sensors = HatSensors(hat(tmp_path, battery=True), adc=FakeAdc(OSError(errno.EIO, "SPI transfer failed")))
    readings = sensors.read()
    assert readings == Readings(20.0, 50.0, None, readings.errors)
    assert readings.errors == ("battery: OSError: [Errno 5] SPI transfer failed",)
    assert sensors.failures == {"battery": 1}
    _, error = read_safely(sensors)
    assert error == "battery: OSError: [Errno 5] SPI transfer failed"


class MockMCP3001(MockSPIDevice):  # type: ignore[misc]
    """The slave side of an MCP3001: on select, a null bit, then 10 result bits, MSB first."""

    def __init__(self, raw: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.raw = raw

    def on_start(self) -> None:
        super().on_start()
        # gpiozero reads 16 bits, "xx0RRRRR RRRRRxxx"
        self.tx_word(self.raw << 3, bits_per_word=16)


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockFactory]:
    f = MockFactory()
    # gpiozero 2.0's software SPI bus builds itself with the *default* factory even when
    # given one: make the mock the default for the test.
    monkeypatch.setattr(Device, "pin_factory", f)
    yield f
    f.reset()


def test_battery_through_gpiozero_mcp3001_on_mock_pins(tmp_path: Path, factory: MockFactory) -> None:
    raw = 620  # 620 / 1023 * 3.3 V * 2 = 4.0 V
    device = MockMCP3001(raw, clock_pin=11, mosi_pin=10, miso_pin=9, select_pin=8, pin_factory=factory)
    battery = Battery(hat(tmp_path, battery=True), pin_factory=factory)
    try:
        assert isinstance(battery._open(), MCP3001)
        assert battery.voltage() == pytest.approx(raw / 1023 * 3.3 * 2, abs=0.01)
        assert battery.level() == pytest.approx(80.0, abs=1.0)
    finally:
        battery.close()
        device.close()


def test_an_adc_that_cannot_open_is_unknown_and_tried_again(tmp_path: Path, factory: MockFactory) -> None:
    squatter = LED(8, pin_factory=factory)  # something else holds the chip-select pin
    sensors = HatSensors(hat(tmp_path, climate="none", battery=True), pin_factory=factory)
    assert sensors.read().battery is None
    assert sensors.failures["battery"] == 1
    squatter.close()
    assert sensors.read().battery == 0.0  # opened now; an idle mock bus reads 0 V
    assert sensors.failures["battery"] == 1
    sensors.close()


def test_lipo_curve_table_points() -> None:
    for volts, percent in LIPO_CURVE:
        assert lipo_level(volts) == pytest.approx(percent)
    assert lipo_level(3.0) == 0.0 and lipo_level(4.35) == 100.0 and lipo_level(float("nan")) == 0.0
    assert lipo_level(3.75) == pytest.approx(30.0)


@given(
    st.floats(min_value=0, max_value=6, allow_nan=False),
    st.floats(min_value=0, max_value=6, allow_nan=False),
)
def test_lipo_curve_is_monotone_and_bounded(a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    assert 0.0 <= lipo_level(low) <= lipo_level(high) <= 100.0


@given(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=1.0, max_value=4.0))
def test_battery_level_is_always_a_valid_exif_value(fraction: float, divider: float) -> None:
    config = HatSensorsConfig(type="hat", climate="none", battery_divider=divider)
    level = Battery(config, adc=FakeAdc(fraction)).level()
    assert 0.0 <= level <= 100.0


# --- configuration and the capture path ---------------------------------------------------


def test_hat_config_from_toml(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(
        sensors={
            "type": "hat",
            "climate": "bme280",
            "iio_root": "iio",
            "battery_divider": 1.5,
            "battery_vref": 3.0,
            "climate_retry_delay": "0.5s",
            "pin_factory": "mock",
        }
    )
    config = load_config(path, environ={})
    sensors = config.sensors
    assert isinstance(sensors, HatSensorsConfig)
    assert sensors.iio_root == tmp_path / "iio"  # relative to the config file
    assert (sensors.battery_divider, sensors.battery_vref, sensors.climate_retry_delay) == (1.5, 3.0, 0.5)
    assert isinstance(make_sensors(sensors), HatSensors)


def test_a_hat_whose_every_sensor_fails_still_captures_with_unknowns(
    write_config: Callable[..., Path], tmp_path: Path, flaky: Callable[[str, int, int], None]
) -> None:
    iio_device(tmp_path / "iio", 0, "dht11", in_temp_input=18000, in_humidityrelative_input=70000)
    flaky("in_temp_input", errno.EIO, -1)
    config = load_config(
        write_config(sensors={"type": "hat", "iio_root": str(tmp_path / "iio"), "pin_factory": "mock"}),
        environ={},
    )
    assert isinstance(config.sensors, HatSensorsConfig)
    pipeline = Pipeline.build(config)
    try:
        hat_sensors = HatSensors(config.sensors, sleep=Sleeps(), adc=FakeAdc(RuntimeError("no SPI")))
        pipeline.capturer.sensors = hat_sensors
        result = pipeline.capturer.capture()
        assert result.ok, result.error
        assert result.image is not None
        path = config.storage.data_dir / result.image.path
        parsed = parse_image(path, strict=True)
        assert (parsed["temp"], parsed["hum"], parsed["bat"]) == (-300.0, -1.0, 0)
        assert hat_sensors.failures == {"climate": 1, "battery": 1}
        row = pipeline.queue.image_at("0a1b2c3d", result.image.datetime)
        assert row is not None
        error = json.loads(row.image_metadata)["sensor_error"]
        assert "climate: OSError" in error and "battery: RuntimeError: no SPI" in error
    finally:
        pipeline.close()

"""``/metrics``: the trap in the Prometheus exposition format, read from the queue at each scrape.

Every figure is a gauge computed from the queue and the status data when Prometheus scrapes
(the agent keeps no counters of its own, so a restart loses nothing). Names are prefixed
``sticky_`` and every series carries the ``device`` label, so a fleet can be scraped into one
Prometheus and alerted on (README: "Metrics").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector


def _ts(iso: str | dt.datetime | None) -> float | None:
    if not iso:
        return None
    t = dt.datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return t.timestamp()


class TrapCollector(Collector):
    """Turns the dashboard's data (:func:`agent.web.dashboard.collect`) into metric families."""

    def __init__(self, collect: Callable[[], dict[str, Any]], insects_24h: Callable[[], int | None]) -> None:
        self._collect = collect
        self._insects_24h = insects_24h

    def collect(self) -> Iterator[Any]:
        return (m for m in self._families() if m is not None)

    def _families(self) -> Iterator[Any]:
        s = self._collect()
        device = s.get("device") or "unknown"
        labels = ["device"]

        def gauge(name: str, doc: str, value: float | None, unit: str = "") -> GaugeMetricFamily | None:
            if value is None:
                return None
            g = GaugeMetricFamily(name, doc, labels=labels, unit=unit)
            g.add_metric([device], float(value))
            return g

        info = InfoMetricFamily("sticky_agent", "sticky-agent version and device", labels=labels)
        info.add_metric([device], {"version": str(s.get("version"))})
        yield info
        yield gauge("sticky_agent_running", "1 if the agent process runs", int(bool(s["agent"]["running"])))
        att = GaugeMetricFamily(
            "sticky_capture_attempts_24h",
            "capture attempts in the last 24 hours by outcome (ok, failed, clock, disk_full)",
            labels=[*labels, "outcome"],
        )
        for outcome in sorted({"ok", "failed", "clock", "disk_full", *(s.get("captures_24h") or {})}):
            att.add_metric([device, outcome], float((s.get("captures_24h") or {}).get(outcome, 0)))
        yield att
        q = s.get("queue")
        sinks: dict[str, dict[str, Any]] = s.get("sinks") or {}
        if q:
            files = GaugeMetricFamily(
                "sticky_images",
                "images in the queue by file state (captured, evicted...)",
                labels=[*labels, "state"],
            )
            files_bytes = GaugeMetricFamily(
                "sticky_images_bytes", "bytes of images in the queue by file state", labels=[*labels, "state"]
            )
            for state, t in q["states"].items():
                files.add_metric([device, state], float(t["count"]))
                files_bytes.add_metric([device, state], float(t["bytes"]))
            yield files
            yield files_bytes
        yield from _sink_families(device, labels, sinks)
        yield gauge(
            "sticky_last_capture_timestamp_seconds",
            "when the last successful capture was taken (Unix time)",
            _ts(s.get("last_image_time")),
        )
        yield gauge(
            "sticky_clock_trusted",
            "1 if the clock is NTP- or RTC-backed",
            int(bool(s["clock"].get("trusted"))),
        )
        yield gauge(
            "sticky_disk_free_bytes",
            "free bytes on the data folder's file system",
            s["disk"].get("free_bytes"),
        )
        img = s.get("latest_image")
        if img is not None:
            yield gauge("sticky_battery_percent", "battery charge on the newest image", img.battery)
            yield gauge("sticky_temperature_celsius", "temperature on the newest image", img.temperature)
            yield gauge("sticky_humidity_percent", "relative humidity on the newest image", img.humidity)
        insects = s.get("insects") or {}
        last = insects.get("last_image")
        yield gauge(
            "sticky_insects_on_card",
            "insects the detector found on the newest analysed image",
            last["insects"] if last else None,
        )
        yield gauge("sticky_new_insects_24h", "new insects in the last 24 hours", self._insects_24h())


#: Delivery states, one series each per sink (``waiting`` counts images a sink has not seen yet).
DELIVERY_STATES = ("waiting", "uploaded", "verified", "failed", "conflict")


def _sink_families(device: str, labels: list[str], sinks: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """Given the status's ``sinks``, yield the per-sink families, each series with a ``sink`` label."""
    by_sink = [*labels, "sink"]
    images = GaugeMetricFamily(
        "sticky_queue_images", "images by delivery state at each sink", labels=[*by_sink, "state"]
    )
    waiting = GaugeMetricFamily("sticky_bytes_waiting", "bytes of images not yet on the sink", labels=by_sink)
    annotations = GaugeMetricFamily(
        "sticky_sink_annotations",
        "annotations by state at each sink (sent, pending, failed)",
        labels=[*by_sink, "state"],
    )
    up = GaugeMetricFamily("sticky_sink_reachable", "1 if the sink answered its last probe", labels=by_sink)
    healthy = GaugeMetricFamily(
        "sticky_sink_ok", "1 if the sink answered its last check without an error", labels=by_sink
    )
    required = GaugeMetricFamily(
        "sticky_sink_required",
        "1 if retention waits for this sink before deleting an original",
        labels=by_sink,
    )
    ok = GaugeMetricFamily(
        "sticky_last_sync_success_timestamp_seconds",
        "when an image was last verified on the sink (Unix time)",
        labels=by_sink,
    )
    for name, sink in sinks.items():
        counts = {state: float(sink.get(state) or 0) for state in DELIVERY_STATES}
        counts["waiting"] -= counts["uploaded"]  # the status's waiting counts the uploaded ones too
        for state, n in counts.items():
            images.add_metric([device, name, state], n)
        waiting.add_metric([device, name], float(sink.get("waiting_bytes") or 0))
        for state, n in (sink.get("annotations") or {}).items():
            annotations.add_metric([device, name, state], float(n))
        if sink.get("reachable") is not None:
            up.add_metric([device, name], float(sink["reachable"]))
        if sink.get("last_state") not in (None, "not checked"):
            healthy.add_metric([device, name], float(sink["last_state"] == "ok"))
        required.add_metric([device, name], float(bool(sink.get("required", True))))
        t = _ts(sink.get("last_success"))
        if t is not None:
            ok.add_metric([device, name], t)
    yield from (images, waiting, annotations, up, healthy, required, ok)


def render(collector: Collector) -> bytes:
    """Given a collector, return one scrape's text (its own registry: nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)

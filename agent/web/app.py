"""The web page's routes and its server thread, inside the running agent.

:class:`WebApp` is a Werkzeug WSGI application over the agent; :class:`WebServer` serves it
with Werkzeug's threaded server in a daemon thread (``[web] bind``/``port``). Every request
passes :meth:`WebApp._guard`: the ``Host`` must name this server (no DNS rebinding), the
password when one is set, and the CSRF token on every POST.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from agent.errors import StickyAgentError
from agent.web import dashboard, export, gallery, metrics, plots
from agent.web.aim import aim_html
from agent.web.auth import Csrf, WebPassword, load_password
from agent.web.data import WebReader
from agent.web.layout import page
from agent.web.preview import Preview

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from agent.service import Agent

log = logging.getLogger(__name__)

_ROUTES = Map(
    [
        Rule("/", endpoint="dashboard"),
        Rule("/fragment/dashboard", endpoint="dashboard_fragment"),
        Rule("/status.json", endpoint="status_json"),
        Rule("/aim", endpoint="aim"),
        Rule("/preview.mjpg", endpoint="preview_stream"),
        Rule("/preview/state.json", endpoint="preview_state"),
        Rule("/preview/<any(start, stop, flash, lens):what>", endpoint="preview_action", methods=["POST"]),
        Rule("/capture", endpoint="capture", methods=["POST"]),
        Rule("/captures", endpoint="captures"),
        Rule("/captures/<int:image_id>", endpoint="capture_page"),
        Rule("/thumb/<int:image_id>", endpoint="thumb"),
        Rule("/image/<int:image_id>.jpg", endpoint="image"),
        Rule("/counts", endpoint="counts"),
        Rule("/export.csv", endpoint="export_csv"),
        Rule("/metrics", endpoint="metrics"),
        Rule("/static/<any('app.js', 'app.css'):name>", endpoint="static"),
    ]
)
_STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MJPEG_BOUNDARY = "frame"


class WebApp:
    """The page over one running agent."""

    def __init__(self, agent: Agent, password: WebPassword | None, csrf: Csrf | None = None) -> None:
        self.agent = agent
        self.config = agent.config
        self.password = password
        self.csrf = csrf or Csrf()
        self.preview = Preview(
            self.config.web,
            self.config.storage.data_dir,
            camera=lambda: agent.pipeline.capturer.camera if agent.pipeline else None,
            flash=lambda: agent.pipeline.capturer.flash if agent.pipeline else None,
            capture_due=self._capture_due,
        )
        self.collector = metrics.TrapCollector(self._collect, self._new_insects_24h)
        self.allowed_hosts: set[str] = set()

    def _capture_due(self) -> str | None:
        """Return why the preview must pause for a capture now, or None."""
        if self.agent.manual_requested:
            return "a capture was asked for"
        scheduler = self.agent.scheduler
        nxt = scheduler.next_run_time if scheduler is not None else None
        if nxt is not None:
            left = (nxt - dt.datetime.now(dt.UTC)).total_seconds()
            if left < self.config.web.preview_pause_before:
                return "a scheduled capture is due"
        return None

    def _collect(self) -> dict[str, Any]:
        return dashboard.collect(self.config)

    def _reader(self) -> WebReader:
        return WebReader(self.config.storage.queue_path)

    def _new_insects_24h(self) -> int | None:
        if self.config.detector.type == "none":
            return None
        reader = self._reader()
        try:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)
            return sum(r.new_insects or 0 for r in reader.rows(since))
        finally:
            reader.close()

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._guard(request) or self._dispatch(request)
        except HTTPException as e:
            response = e.get_response(environ)
        except StickyAgentError as e:
            log.error("web page: %s", e)
            response = Response(f"error: {e}\n", 503, mimetype="text/plain")
        except Exception:  # a bug in one page must not take the page (or the agent) down
            log.exception("web page: %s %s failed", request.method, request.path)
            response = Response("internal error (see the agent's log)\n", 500, mimetype="text/plain")
        response.headers.update({k: v for k, v in _SECURITY_HEADERS.items() if k not in response.headers})
        return response(environ, start_response)

    def _guard(self, request: Request) -> Response | None:
        if self.allowed_hosts and request.host not in self.allowed_hosts:
            return Response("unknown Host header: use the trap's address\n", 421, mimetype="text/plain")
        if self.password is not None and not self.password.accepts(request.headers.get("Authorization")):
            return Response(
                "this trap's page needs its password\n",
                401,
                {"WWW-Authenticate": 'Basic realm="sticky-agent", charset="UTF-8"'},
                mimetype="text/plain",
            )
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf")
            if not self.csrf.check(sent, request.headers.get("Origin"), request.host):
                raise Forbidden("missing or wrong CSRF token: reload the page and try again")
        return None

    def _dispatch(self, request: Request) -> Response:
        adapter = _ROUTES.bind_to_environ(request.environ)
        endpoint, args = adapter.match()
        handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
        return handler(request, **args)

    def _page(self, title: str, body: Markup | str, active: str, device: str | None = None) -> Response:
        if device is None:
            device = self.agent.pipeline.device if self.agent.pipeline else None
        return Response(page(title, body, self.csrf.token, device, active), mimetype="text/html")

    # -- pages ------------------------------------------------------------------------

    def on_dashboard(self, request: Request) -> Response:
        data = self._collect()
        body = Markup('<div id="dashboard" data-refresh="/fragment/dashboard">{}</div>').format(
            dashboard.dashboard_html(data)
        )
        return self._page("Dashboard", body, "/", data.get("device"))

    def on_dashboard_fragment(self, request: Request) -> Response:
        return Response(str(dashboard.dashboard_html(self._collect())), mimetype="text/html")

    def on_status_json(self, request: Request) -> Response:
        data = self._collect()
        img = data.pop("latest_image", None)
        data["latest_image"] = asdict(img) if img is not None else None
        return Response(json.dumps(data, default=str, indent=1), mimetype="application/json")

    def on_aim(self, request: Request) -> Response:
        return self._page("Aim & focus", aim_html(self.csrf.token, self.preview.state()), "/aim")

    def on_preview_state(self, request: Request) -> Response:
        return Response(json.dumps(self.preview.state()), mimetype="application/json")

    def on_preview_action(self, request: Request, what: str) -> Response:
        if what == "start":
            self.preview.start()
        elif what == "stop":
            self.preview.stop()
        elif what == "flash":
            self.preview.set_flash(request.form.get("on") == "1")
        else:
            try:
                value = float(request.form.get("value", ""))
            except ValueError:
                raise BadRequest("lens position: a number of dioptres, e.g. 4.5") from None
            if not 0 <= value <= 15:
                raise BadRequest("lens position: 0 to 15 dioptres")
            if not self.preview.set_lens(value):
                raise BadRequest("this camera has no focus motor (Camera Module 3 has)")
        return self._done(request, self.preview.state())

    def _done(self, request: Request, state: dict[str, Any]) -> Response:
        """Answer an action: JSON for the page's script, a redirect back for a plain form."""
        if request.headers.get("X-CSRF-Token"):
            return Response(json.dumps(state), mimetype="application/json")
        back = request.referrer if request.referrer and request.referrer.startswith(request.host_url) else "/"
        return redirect(back, 303)

    def on_preview_stream(self, request: Request) -> Response:
        preview = self.preview
        if not preview.running:  # a GET never acts: the preview is started by a POST
            return Response("the preview is stopped: press Start preview\n", 409, mimetype="text/plain")

        def frames() -> Iterator[bytes]:
            seq = 0
            while True:
                frame = preview.wait_frame(seq, timeout=30)
                if frame is None:
                    return
                seq = frame.seq
                yield (
                    (
                        f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(frame.jpeg)}\r\n"
                        f"X-Sharpness: {frame.sharpness}\r\n\r\n"
                    ).encode()
                    + frame.jpeg
                    + b"\r\n"
                )

        return Response(
            frames(),
            mimetype=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            direct_passthrough=True,
        )

    def on_capture(self, request: Request) -> Response:
        self.agent.request_capture()
        return self._done(request, {"requested": True})

    def on_captures(self, request: Request) -> Response:
        try:
            day = dt.date.fromisoformat(request.args["day"]) if request.args.get("day") else None
            before = int(request.args["before"]) if request.args.get("before") else None
        except ValueError:
            raise BadRequest("day: YYYY-MM-DD; before: an image id") from None
        reader = self._reader()
        try:
            body = gallery.gallery_html(reader, self.csrf.token, day, before)
        finally:
            reader.close()
        return self._page("Captures", body, "/captures")

    def on_capture_page(self, request: Request, image_id: int) -> Response:
        reader = self._reader()
        try:
            row = reader.image(image_id)
            if row is None:
                raise NotFound(f"no image {image_id}")
            body = gallery.image_html(reader, row)
        finally:
            reader.close()
        return self._page(row.name, body, "/captures")

    def _image_response(self, request: Request, image_id: int, kind: str | None) -> Response:
        reader = self._reader()
        try:
            row = reader.image(image_id)
        finally:
            reader.close()
        path = gallery.image_file(self.config.storage.data_dir, row, kind) if row else None
        if path is None:
            raise NotFound(f"no file for image {image_id}")
        response = Response(path.read_bytes(), mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=86400"
        return response

    def on_thumb(self, request: Request, image_id: int) -> Response:
        return self._image_response(request, image_id, "thumbnail")

    def on_image(self, request: Request, image_id: int) -> Response:
        return self._image_response(request, image_id, None)

    def on_counts(self, request: Request) -> Response:
        try:
            days = min(31, max(1, int(request.args.get("days", "3"))))
        except ValueError:
            raise BadRequest("days: a whole number of days") from None
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=days)
        reader = self._reader()
        try:
            hours = plots.hourly(reader.rows(start), start, now)
        finally:
            reader.close()
        return self._page("Counts", plots.counts_html(hours, days), "/counts")

    def on_export_csv(self, request: Request) -> Response:
        reader = self._reader()
        names = dashboard.sink_names(self.config)

        def body() -> Iterator[bytes]:
            try:
                for line in export.csv_lines(reader.rows(sinks=names), names):
                    yield line.encode()
            finally:
                reader.close()

        device = self.agent.pipeline.device if self.agent.pipeline else "trap"
        return Response(
            body(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{device}.csv"'},
        )

    def on_metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(self.collector), content_type=CONTENT_TYPE_LATEST)

    def on_static(self, request: Request, name: str) -> Response:
        data = resources.files("agent.web").joinpath("static", name).read_bytes()
        response = Response(data, mimetype=_STATIC_TYPES[name])
        response.headers["Cache-Control"] = "max-age=3600"
        return response


class _QuietHandler(WSGIRequestHandler):
    """Log failed requests only (a dashboard refreshing every few seconds would fill the journal)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code)[:1] in ("4", "5") and str(code) != "401":
            super().log_request(code, size)


class WebServer:
    """The page served in a daemon thread of the agent: ``start()``, ``url``, ``stop()``."""

    def __init__(self, agent: Agent) -> None:
        """Given the agent, prepare the page. Raise CredentialsError if it would be reachable
        from the network without a password."""
        self.config = agent.config.web
        self.app = WebApp(agent, load_password(self.config))
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        port = self._server.server_port if self._server else self.config.port
        return self.config.model_copy(update={"port": port}).url

    def start(self) -> None:
        """Listen and serve. Raise StickyAgentError if the address cannot be bound."""
        try:
            self._server = make_server(
                self.config.bind, self.config.port, self.app, threaded=True, request_handler=_QuietHandler
            )
        except OSError as e:
            raise StickyAgentError(
                f"[web] cannot listen on {self.config.bind}:{self.config.port}: {e.strerror or e}; "
                "choose another [web] port, or stop what uses it"
            ) from e
        port = self._server.server_port
        if self.config.loopback:
            self.app.allowed_hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        serve = functools.partial(self._server.serve_forever, poll_interval=0.2)
        self._thread = threading.Thread(target=serve, name="web", daemon=True)
        self._thread.start()
        log.info("web page at %s%s", self.url, "" if self.app.password else " (loopback only, no password)")

    def stop(self) -> None:
        self.app.preview.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

"""Doctor checks of the sinks: for each ``[[sink]]``, its credentials, then a probe of the platform.

Each sink gets a ``credentials <name>`` line (when it reads a secret) and a ``sink <name>`` line:
the sink is opened as the agent opens it (:func:`agent.sinks.base.open_sink`, the credentials
file the systemd unit loads when run by hand) and asked :meth:`probe`, with short timeouts.
One sink failing never hides another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent.config import Config
from agent.doctor.checks import (
    PROBE_CONNECT_TIMEOUT_S,
    PROBE_READ_TIMEOUT_S,
    Check,
    _one_line,
    fail,
    ok,
    warn,
    with_unit_credentials,
)
from agent.errors import (
    CredentialsError,
    SinkAuthError,
    SinkForbidden,
    SinkProtocolError,
    SinkUnreachable,
    StickyAgentError,
    SyncError,
)
from agent.sinks.base import SinkSettings

#: What each sink type's credentials file holds (one line).
SECRET_FORM = {
    "stickypi": "username:password",
    "datalake": "api_key:secret",
    "tator": "the API token",
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_sinks(config: Config, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Given the config, return the credentials and probe checks of every sink, in order."""
    if not config.sinks:
        return [ok("sinks", "no [[sink]] table: this trap only captures")]
    out: list[Check] = []
    for settings in config.sinks:
        try:
            out += check_sink(settings, environ)
        except Exception as e:  # one sink's crash must not hide the others
            out.append(
                fail(f"sink {settings.name}", f"the check itself failed: {_one_line(e)}", "run with --debug")
            )
    return out


def _credentials_hint(settings: SinkSettings, where: str, message: str) -> str:
    if "Permission denied" in message:
        return "run the doctor as root (sudo stickyctl doctor): the credentials file is root-only"
    if "readable or writable by every user" in message:
        return f"chmod 600 {where}; chown root:root {where} (and change the secret: others could read it)"
    form = SECRET_FORM.get(settings.type, "the secret")
    hint = f"write one line, {form}, to {where} (root:root, mode 600)"
    if settings.type == "stickypi":
        hint += "; hardware/install.sh --api-user NAME --api-password-file FILE does it"
    return hint


def check_sink(settings: SinkSettings, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Given one sink's settings, return its ``credentials <name>`` check (if it reads a secret)
    and its ``sink <name>`` check: open it as the agent does, then probe it."""
    from agent.sinks.base import open_sink
    from agent.sinks.credentials import credentials_path

    env = os.environ if environ is None else environ
    name, address, section = settings.name, settings.address, settings.section
    # Outside systemd: read the file the unit loads (LoadCredential=<credential_name>:<file>).
    settings = with_unit_credentials(settings, env)
    settings = settings.model_copy(
        update={
            "connect_timeout": min(settings.connect_timeout, PROBE_CONNECT_TIMEOUT_S),
            "read_timeout": min(settings.read_timeout, PROBE_READ_TIMEOUT_S),
        }
    )
    kind = settings.type
    try:
        secret = credentials_path(settings, env)
        where = str(secret)
    except CredentialsError:
        secret, where = None, "the credentials file"
    check = f"sink {name}"
    try:
        sink = open_sink(settings, env)
    except CredentialsError as e:
        message = _one_line(e)
        return [fail(f"credentials {name}", message, _credentials_hint(settings, where, message))]
    except StickyAgentError as e:
        return [fail(check, _one_line(e), f"check [{section}] in the configuration")]
    out: list[Check] = []
    if kind in SECRET_FORM and secret is not None and secret.is_file():  # (it opened: it was read)
        out.append(ok(f"credentials {name}", f"{where}: {SECRET_FORM[kind]} read"))
    try:
        sink.probe()
    except SinkProtocolError as e:  # something answered, not the platform (a captive portal, a proxy?)
        hint = f"check [{section}]: is {address} the {kind} platform (not a login page or proxy)?"
        out.append(fail(check, f"{address} answered, but not as the platform does: {_one_line(e)}", hint))
    except SinkUnreachable as e:
        host = urlsplit(address).hostname or ""
        if host in _LOOPBACK:
            hint = (
                f"nothing answers at {address}: the demo's servers run only while `stickyctl demo` runs "
                "(or start one: stickyctl devserver --port <port> --data-dir <dir> --user NAME:PASSWORD)"
            )
        else:
            hint = (
                f"check the network (ping, `curl -I {address}`), [{section}] and the server; "
                "images wait in the queue meanwhile"
            )
        out.append(fail(check, f"{address} unreachable: {_one_line(e)}", hint))
    except SinkAuthError as e:
        hint = f"the platform refused our credentials: fix {where}"
        out.append(fail(check, f"{address}: {_one_line(e)}", hint))
    except SinkForbidden as e:
        out.append(fail(check, f"{address}: {_one_line(e)}", "ask for an account allowed to upload"))
    except SyncError as e:  # it answered, with an error (a 500 is an answer, not the network)
        hint = f"the server is up but answers with an error: see the server's logs; check [{section}]"
        out.append(fail(check, f"{address} answered with an error: {_one_line(e)}", hint))
    else:
        required = "" if settings.required else " (not required: retention does not wait for it)"
        where_ = f"{address} reachable" if address != name else "reachable"  # (in-memory: no address)
        out.append(ok(check, f"{where_}, credentials accepted{required}"))
    finally:
        sink.close()
    if not settings.required and out and out[-1].status == "FAIL":
        last = out[-1]  # a sink retention does not wait for: images are safe, so a warning
        out[-1] = warn(last.check, last.detail + " (not required)", last.hint)
    return out

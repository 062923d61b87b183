"""The sync side: push queued images and annotations to a remote sink when the network is there.

- :mod:`agent.sinks.base`: the ``Sink`` seam (what is there? upload this image / these annotations)
- :mod:`agent.sinks.stickypi`: the Sticky Pi API sink
- :mod:`agent.sinks.credentials`: API credentials from a file or systemd credentials
- :mod:`agent.sinks.throttle`: bandwidth cap and daily data budget
- :mod:`agent.sinks.worker`: the worker thread: probe, back off, batch, verify
- :mod:`agent.sinks.http` (``transport``): the HTTP transport every sink shares, loaded at its
  first use, so loading the config (which imports every sink module) loads no HTTP stack
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.lazy import lazy_import

if TYPE_CHECKING:
    from agent.sinks import http as transport
else:  # requests and urllib3 load when a sink is made, not when the config loads
    transport = lazy_import("agent.sinks.http", globals(), "transport")

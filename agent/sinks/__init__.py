"""The sync side: push queued images and annotations to a remote sink when the network is there.

- :mod:`agent.sinks.base`: the ``Sink`` seam (what is there? upload this image / these annotations)
- :mod:`agent.sinks.stickypi`: the Sticky Pi API sink
- :mod:`agent.sinks.credentials`: API credentials from a file or systemd credentials
- :mod:`agent.sinks.throttle`: bandwidth cap and daily data budget
- :mod:`agent.sinks.worker`: the worker thread: probe, back off, batch, verify
"""

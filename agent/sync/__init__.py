"""The sync side: push queued images and annotations to a remote sink when the network is there.

- :mod:`agent.sync.sink`: the ``Sink`` seam (what is there? upload this image / these annotations)
- :mod:`agent.sync.stickypi`: the Sticky Pi API sink
- :mod:`agent.sync.credentials`: API credentials from a file or systemd credentials
- :mod:`agent.sync.throttle`: bandwidth cap and daily data budget
- :mod:`agent.sync.worker`: the worker thread: probe, back off, batch, verify
"""

"""The trap's own web page, served by the running agent (``[web]`` in the config).

A technician at a trap opens it on a phone or laptop: the dashboard (is it capturing, what
is waiting, the clock, disk, battery and climate, each sink's state), *aim and focus* (a live
low-resolution view with a sharpness score, exposure/gain, the flash and the lens), the
captures with the detector's outlines, the insect counts over the last days, a CSV export
and Prometheus metrics.

Modules: :mod:`~agent.web.settings` (the ``[web]`` section), :mod:`~agent.web.app` (routes
and the server thread), :mod:`~agent.web.auth` (password and CSRF), :mod:`~agent.web.data`
(the queue queries the pages need), :mod:`~agent.web.preview` (the live view),
:mod:`~agent.web.pages` and :mod:`~agent.web.gallery` (HTML), :mod:`~agent.web.plots`
(server-side SVG), :mod:`~agent.web.export` (CSV), :mod:`~agent.web.metrics` (``/metrics``).

Built on Werkzeug (already a dependency; its threaded server) and plain HTML: no Node build,
no CDN, one small hand-written script in ``static/``. Importing this package imports nothing
heavy; the server is built only when ``[web] enabled = true``.
"""

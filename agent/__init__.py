"""sticky-agent: the software inside a Sticky Pi style smart insect trap.

The data path, one module per step::

    scheduler -> capture (camera + flash + sensors) -> imagewriter (EXIF, atomic
    write, thumbnails, md5) -> queue (SQLite) -> detect (annotations into the queue)
    -> sync (images, then their annotations, to the Sticky Pi API)

``stickyctl`` (``agent.cli``) is the command-line entry point.
"""

__version__ = "0.1.0"

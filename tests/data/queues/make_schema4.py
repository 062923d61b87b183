"""Make the schema-4 queue fixture with the release at 6050302 (images in every state, annotations).

git worktree add /tmp/oldrel 6050302
python tests/data/queues/make_schema4.py tests/data/queues/schema4-release-6050302.sqlite
"""

import datetime as dt
import json
import sys

sys.path.insert(0, "/tmp/oldrel")
from pathlib import Path

from agent.queue import ImageState, Queue
from agent.queue.schema import AnnotationState
from agent.queue.syncrows import add_annotation, record_sync_failure, set_annotation_state

out = Path(sys.argv[1])
out.unlink(missing_ok=True)
q = Queue(out)
assert q.schema_version == 4
t0 = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
ids = {}
states = [
    "captured",
    "captured_tried",
    "uploaded",
    "verified",
    "evicted",
    "failed",
    "conflict",
    "quarantined",
    "missing",
    "discarded",
]
for i, name in enumerate(states):
    when = t0 + dt.timedelta(minutes=20 * i)
    img = q.add_image(
        device="0a1b2c3d",
        when=when,
        path=f"0a1b2c3d/0a1b2c3d.{when:%Y-%m-%d_%H-%M-%S}.jpg",
        md5=f"{i:032x}",
        size=1000 + i,
        width=2592,
        height=1944,
        metadata={"T": 21.5, "H": 50.0, "B": 80},
        manual=(i == 1),
    )
    ids[name] = img.id
q.set_state(ids["uploaded"], ImageState.UPLOADED)
q.set_state(ids["verified"], ImageState.UPLOADED)
q.set_state(ids["verified"], ImageState.VERIFIED)
q.set_state(ids["evicted"], ImageState.VERIFIED)
q.set_state(ids["evicted"], ImageState.EVICTED)
for _ in range(5):
    record_sync_failure(q, ids["failed"], "the server answered the upload but does not hold the image", 5)
record_sync_failure(q, ids["captured_tried"], "/_put_new_images: the API answered 500", 5)
q.set_state(ids["conflict"], ImageState.CONFLICT, error="the server holds it with md5 ffff, ours is 0006")
q.set_state(ids["quarantined"], ImageState.QUARANTINED, error="the file no longer matches its md5")
q.set_state(ids["missing"], ImageState.MISSING, error="file gone")
q.set_state(ids["discarded"], ImageState.DISCARDED)
outline = [{"contour": [[[1, 2]], [[3, 4]], [[5, 6]]], "name": "insect", "value": 0}]
a1 = add_annotation(q, ids["verified"], "sticky-agent-builtin", "1795960800-aaaa", outline)
set_annotation_state(q, a1.id, AnnotationState.UPLOADED)
a2 = add_annotation(q, ids["evicted"], "sticky-agent-builtin", "1795960800-aaaa", outline)
set_annotation_state(q, a2.id, AnnotationState.FAILED, error="refused", attempt=True)
add_annotation(q, ids["captured"], "sticky-agent-builtin", "1795960800-aaaa", outline)
q.record_attempt(started_at=t0, outcome="ok", manual=False, image_id=ids["captured"])
q.publish(sync_reachable="yes", next_capture="2026-06-01T04:00:00+00:00")
print(json.dumps(ids))
q.close()

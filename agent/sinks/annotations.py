"""The annotation half of a sync pass: send each image's outlines once its sink holds the image.

What the sink already holds (one lookup) is marked sent; the rest is sent one image's batch at
a time. A refusal is checked against a second lookup (a refused duplicate is held after all);
it counts against the annotation only if the sink took something else in the pass (else it is
an outage), and after ``max_attempts`` the annotation is ``failed`` for that sink.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.errors import SinkRejected
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.queue.schema import AnnotationState
from agent.sinks.base import AnnotationBatch, Sink, SinkSettings
from agent.sinks.passes import PassStats, image_record


def send_annotations(
    sink: Sink, queue: Queue, data_dir: Path, settings: SinkSettings, stats: PassStats
) -> None:
    """Given a sink and its settings, send up to a batch of the annotations it lacks whose image
    it verifiably holds, counting them in ``stats``. Raise SyncError if the sink cannot be
    reached or refuses the account."""
    pending = dq.pending_annotations(queue, settings.name, settings.batch_size)
    if not pending:
        return
    records = {img.id: image_record(img, data_dir) for _, img, _ in pending}
    held = sink.lookup_annotations(list(records.values()))
    refused = []
    for ann, img, attempts in pending:
        record = records[img.id]
        if (record.key, ann.algo_name, ann.algo_version) in held:
            dq.set_annotation_delivery(queue, ann.id, settings.name, AnnotationState.UPLOADED)
            continue
        batch = AnnotationBatch(record.key, img.md5, ann.algo_name, ann.algo_version, json.loads(ann.json))
        try:
            sink.upload_annotations(record, batch)
            dq.set_annotation_delivery(queue, ann.id, settings.name, AnnotationState.UPLOADED)
            stats.annotations_sent += 1
            stats.accepted += 1
        except SinkRejected as e:
            refused.append((ann, record, attempts, str(e)))
    if refused:
        held = sink.lookup_annotations([r for _, r, _, _ in refused])
        for ann, record, attempts, error in refused:
            if (record.key, ann.algo_name, ann.algo_version) in held:  # e.g. a duplicate triple
                dq.set_annotation_delivery(queue, ann.id, settings.name, AnnotationState.UPLOADED)
            elif not stats.accepted:  # the sink took nothing this pass: an outage, not counted
                continue
            else:
                give_up = attempts + 1 >= settings.max_attempts
                state = AnnotationState.FAILED if give_up else AnnotationState.PENDING
                dq.set_annotation_delivery(queue, ann.id, settings.name, state, error=error, attempt=True)

"""Ids (doow_otel.model.ids): the hand-written UUIDv5 is the standard library's."""

from __future__ import annotations

import random
import uuid

from doow_otel.model.ids import batch_id, name_id


def test_name_ids_are_uuid5() -> None:
    r = random.Random(5)
    namespace = uuid.UUID("6f1c2d7a-1b10-4c8e-9f0e-5b1d6f0e3c52")
    for _ in range(2000):
        text = "".join(
            chr(r.choice([r.randint(32, 126), r.randint(0xA0, 0xD7FF)]))
            for _ in range(r.randint(0, 12))
        )
        assert name_id(namespace, text, "s1:x") == str(uuid.uuid5(namespace, text + "s1:x"))


def test_a_batch_id_is_the_uuid5_of_its_event_ids() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    namespace = uuid.UUID("5b1d6f0e-3c52-4c8e-9f0e-6f1c2d7a9b10")
    assert batch_id(ids) == str(uuid.uuid5(namespace, ",".join(ids)))

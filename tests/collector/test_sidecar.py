"""The sidecar (collector/sidecar.yaml) end to end: the real otelcol-doow binary tails a
file of usage records through a rotation, a SIGKILL, a copytruncate and lost or stale
checkpoints, reads more over TCP, and the local server holds exact totals, each line
once, with or without a timestamp; bad lines are skipped and reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import (
    ROOT,
    free_port,
    listening,
    require_otelcol,
    start_otelcol,
    stop_process,
    wait_for,
)

SIDECAR_CONFIG = ROOT / "collector" / "sidecar.yaml"
pytestmark = pytest.mark.slow

BAD_LINES = [
    "not json at all",
    '{"metric": "file_lines", "quantity": 0, "license_id": "lic_side"}',
    '{"metric": "file_lines", "license_id": "lic_side"}',
    '{"metric": "file_lines", "quantity": "3", "license_id": "lic_side"}',
    '{"metric": "file_lines", "quantity": 1, "license_id": "lic_side", "kind": "usage"}',
]


def file_line(n: int) -> str:
    """Usage line n. Each file (lines 0-4999, 5000-) opens with a timestamped line (the
    filelog receiver tells files apart by their first kilobyte), then 99 lines alike in
    both files, at the same offsets."""
    stamped = n % 5000 == 0 or (n % 4 == 0 and n % 5000 >= 100)  # a timestamp on some
    record: dict[str, object] = {
        # both kinds bill exactly once: each line is named by its file's doow.file.id
        # and its offset (docs/conversion.md); the metrics keep them apart in the totals
        "metric": "file_lines" if stamped else "plain_lines",
        "quantity": line_quantity(n),
        "license_id": "lic_side",
        "attribution": {"job": "nightly"},
    }
    if stamped:
        record["timestamp"] = stamp(n)
    return json.dumps(record)


def stamped(n: int) -> bool:
    return json.loads(file_line(n))["metric"] == "file_lines"


def line_quantity(n: int) -> int:
    return 1 if n % 5000 < 100 else 1 + n % 3


def stamp(n: int) -> str:
    return f"2026-11-24T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z"


def expected_file_total(lines: range, *, with_timestamp: bool) -> int:
    return sum(line_quantity(n) for n in lines if stamped(n) == with_timestamp)


def file_totals_are(doow: LocalDoow, lines: range) -> bool:
    """Lines `lines` delivered, each exactly once (both metrics' totals)."""
    return doow.total("file_lines") == expected_file_total(
        lines, with_timestamp=True
    ) and doow.total("plain_lines") == expected_file_total(lines, with_timestamp=False)


def file_totals(doow: LocalDoow) -> tuple[float, float]:
    return doow.total("file_lines"), doow.total("plain_lines")


class Sidecar:
    def __init__(self, doow: LocalDoow, tmp_path: Path) -> None:
        self.config = SIDECAR_CONFIG
        self.log = tmp_path / "sidecar.log"
        self.tcp_port = free_port()
        self.health_port = free_port()
        self.http_port = free_port()
        self.env = {
            "DOOW_API_KEY": doow.api_key,
            "DOOW_ENDPOINT": doow.url,
            "DOOW_SIDECAR_FILES": str(tmp_path / "logs" / "usage.log*"),
            "DOOW_SIDECAR_TCP": f"127.0.0.1:{self.tcp_port}",
            "DOOW_SIDECAR_HEALTH": f"127.0.0.1:{self.health_port}",
            "DOOW_QUEUE_DIR": str(tmp_path / "state"),
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELCOL_METRICS_PORT": str(free_port()),
        }
        self.process = None

    def start(self) -> None:
        self.process = start_otelcol(self.config, self.env, self.log)
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"otelcol-doow exited:\n{self.log.read_text()[-3000:]}")
            return listening(self.tcp_port) and self.health() == 200

        assert wait_for(up, seconds=30), self.log.read_text()[-3000:]

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=2) as r:
                return int(r.status)
        except OSError:
            return 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as out:
        out.write("".join(line + "\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())


# 7,500 file lines and 500 TCP lines, each its own event, in a minute or two: more than
# Doow's 1,000 events a minute (the test is about each line arriving once, not pacing)
@pytest.mark.local_doow(events_per_minute=0)
def test_file_rotation_sigkill_reload_and_tcp_deliver_each_line_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    require_otelcol()
    logs = tmp_path / "logs"
    logs.mkdir()
    usage_log = logs / "usage.log"
    sidecar = Sidecar(local_doow, tmp_path)
    sidecar.start()
    try:
        # 5,000 lines, with bad lines among them; read (under the name usage.log), then the
        # file is rotated (renamed, a new file under the old name) and 2,500 more lines go
        # to the new file, which starts with the same lines as the old one did
        first = [file_line(n) for n in range(5000)]
        for i, bad in enumerate(BAD_LINES):
            first.insert(1000 * i + 500, bad)
        append(usage_log, first[:3000])
        assert wait_for(lambda: _file_total(local_doow) > 0, seconds=30)
        append(usage_log, first[3000:])
        usage_log.rename(logs / "usage.log.1")
        append(usage_log, [file_line(n) for n in range(5000, 7500)])
        assert wait_for(lambda: file_totals_are(local_doow, range(7500)), seconds=60), (
            file_totals(local_doow),
            sidecar.log.read_text()[-3000:],
        )
        # the new file's first lines checkpointed (a reader's very first lines, handed on
        # before its first checkpoint, are the one case a crash may count twice)
        checkpoint_barrier(local_doow, logs, "before-kill")
        # killed while it is reading: some delivered, not all
        append(usage_log, [file_line(n) for n in range(7500, 9000)])
        delivered = _file_total(local_doow)
        assert wait_for(lambda: _file_total(local_doow) > delivered, seconds=30)
        sidecar.stop(signal.SIGKILL)
        delivered_at_kill = _file_total(local_doow)
        append(usage_log, [file_line(n) for n in range(9000, 10000)])

        # reload: a changed config, started on the same state directory (docs: sidecar.yaml)
        changed = tmp_path / "sidecar-changed.yaml"
        changed.write_text(
            SIDECAR_CONFIG.read_text().replace("poll_interval: 200ms", "poll_interval: 100ms")
        )
        sidecar.config = changed
        sidecar.start()
        assert sidecar.health() == 200

        # 1,000 lines over TCP, half with an idempotency key (the second copy of a keyed
        # line is the same event), one bad
        tcp_lines = [
            json.dumps(
                {
                    "metric": "tcp_lines",
                    "quantity": 2,
                    "license_id": "lic_side",
                    "metadata": {"n": n},
                }
            )
            for n in range(1000)
        ]
        keyed = [
            json.dumps(
                {
                    "metric": "tcp_keyed",
                    "quantity": 5,
                    "license_id": "lic_side",
                    "idempotency_key": f"k{n % 100}",
                }
            )
            for n in range(200)
        ]
        with socket.create_connection(("127.0.0.1", sidecar.tcp_port), timeout=10) as conn:
            conn.sendall(("\n".join(tcp_lines + keyed + ["[1, 2, 3]"]) + "\n").encode())

        want_file = expected_file_total(range(10000), with_timestamp=True)
        want_plain = expected_file_total(range(10000), with_timestamp=False)
        assert wait_for(
            lambda: (
                local_doow.total("file_lines") == want_file
                and local_doow.total("plain_lines") == want_plain
                and local_doow.total("tcp_lines") == 2000
                and local_doow.total("tcp_keyed") == 500
            ),
            seconds=60,
        ), (
            local_doow.total("file_lines"),
            want_file,
            local_doow.total("plain_lines"),
            want_plain,
            delivered_at_kill,
            local_doow.total("tcp_lines"),
            local_doow.total("tcp_keyed"),
            sidecar.log.read_text()[-3000:],
        )
        time.sleep(2)  # anything still coming would be counted twice
        assert local_doow.total("file_lines") == want_file  # each timestamped line once
        stamped_lines = sum(1 for n in range(10000) if stamped(n))
        assert local_doow.usage(metric="file_lines")[0]["events"] == stamped_lines
        # lines without a timestamp: exactly once too, identical lines at the same offsets
        # of the old and the new file included
        assert local_doow.total("plain_lines") == want_plain
        assert local_doow.usage(metric="plain_lines")[0]["events"] == 10000 - stamped_lines
        assert local_doow.total("tcp_lines") == 2000
        assert local_doow.total("tcp_keyed") == 500
        jobs = {e["attribution"].get("job") for e in local_doow.events(metric="file_lines")}
        assert jobs == {"nightly"}
        assert sidecar.health() == 200
    finally:
        sidecar.stop()
    log = sidecar.log.read_text()
    # ...and the bad lines were skipped, each reported with its file, offset and reason
    assert log.count("bad usage record skipped") >= len(BAD_LINES) + 1, log[-3000:]
    assert "usage.log" in log and "not JSON" in log and "quantity" in log and "kind" in log
    assert '"reason": "not_json"' in log
    assert "dk_" not in log


# 3,000 lines, each its own event, all read twice: six minutes of Doow's budget at once
@pytest.mark.local_doow(events_per_minute=0)
def test_lines_read_again_after_lost_checkpoints_keep_their_ids(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The worst restart: the receiver's storage (offsets and file ids) is gone and every
    line is read again. A line is named by its file's id (device, inode, birth time and
    a generation that starts again at 0), offset and content, so Doow counts none twice,
    with or without a timestamp."""
    require_otelcol()
    (tmp_path / "logs").mkdir()
    sidecar = Sidecar(local_doow, tmp_path)
    lines = [
        json.dumps(
            {"metric": "replayed", "quantity": 1 + n % 5, "license_id": "lic_side"}
            | ({"timestamp": stamp(n)} if n % 2 else {})
        )
        for n in range(3000)
    ]
    append(tmp_path / "logs" / "usage.log", lines)
    want = sum(1 + n % 5 for n in range(3000))
    sidecar.start()
    try:
        assert wait_for(lambda: local_doow.total("replayed") == want, seconds=60)
        sidecar.stop(signal.SIGKILL)
        checkpoints = receiver_storage(tmp_path)
        assert checkpoints, list((tmp_path / "state").iterdir())
        for path in checkpoints:
            path.unlink()
        duplicates = local_doow.stats()["duplicates"]
        sidecar.start()
        assert wait_for(
            lambda: local_doow.stats()["duplicates"] >= duplicates + 3000, seconds=60
        ), (local_doow.stats(), sidecar.log.read_text()[-3000:])
        assert local_doow.total("replayed") == want
        assert local_doow.usage(metric="replayed")[0]["events"] == 3000
    finally:
        sidecar.stop()


# 600 lines and 300 read again within a minute, each its own event: near Doow's budget,
# and a sidecar that meets a 429 halves its share (the test is about ids, not pacing)
@pytest.mark.local_doow(events_per_minute=0)
def test_lines_read_again_after_a_crash_keep_their_ids(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """A crash after lines were handed on and before their checkpoint, made certain: the
    receiver's storage is put back as it was before the last lines were read, then the
    sidecar starts again. Those lines (in a file renamed since) are all read again, and
    each, with or without a timestamp, keeps its id."""
    require_otelcol()
    logs = tmp_path / "logs"
    logs.mkdir()
    usage_log = logs / "usage.log"
    sidecar = Sidecar(local_doow, tmp_path)
    sidecar.start()
    try:
        append(usage_log, [file_line(n) for n in range(300)])
        assert wait_for(lambda: file_totals_are(local_doow, range(300)), seconds=60)
    finally:
        sidecar.stop()  # SIGTERM: the checkpoint is written
    saved = {path: path.read_bytes() for path in receiver_storage(tmp_path)}
    assert saved, list((tmp_path / "state").iterdir())
    sidecar.start()
    try:
        append(usage_log, [file_line(n) for n in range(300, 600)])
        usage_log.rename(logs / "usage.log.1")
        assert wait_for(lambda: file_totals_are(local_doow, range(600)), seconds=60)
        sidecar.stop(signal.SIGKILL)
        for path, data in saved.items():
            path.write_bytes(data)
        before = resent(local_doow)
        sidecar.start()
        assert wait_for(lambda: resent(local_doow) >= before + 300, seconds=60), (
            file_totals(local_doow),
            sidecar.log.read_text()[-3000:],
        )
        time.sleep(2)  # anything still coming would be counted twice
        assert file_totals_are(local_doow, range(600)), file_totals(local_doow)
        assert local_doow.stats()["duplicates"] >= 300
    finally:
        sidecar.stop()


def test_copytruncate_of_identical_lines_loses_none(local_doow: LocalDoow, tmp_path: Path) -> None:
    """logrotate's copytruncate: the file is copied away and truncated in place, then
    written again with the very same lines. The truncated file gets a new doow.file.id,
    so its lines at the offsets of the old ones are new events (none lost), and keep it
    across a restart."""
    require_otelcol()
    logs = tmp_path / "logs"
    logs.mkdir()
    usage_log = logs / "usage.log"
    same = json.dumps({"metric": "same_lines", "quantity": 1, "license_id": "lic_side"})
    sidecar = Sidecar(local_doow, tmp_path)
    sidecar.start()
    try:
        append(usage_log, [same] * 200)
        assert wait_for(lambda: local_doow.total("same_lines") == 200, seconds=60)
        # copied where the glob does not look, truncated, written again: shorter than
        # before, so the receiver sees a truncation whenever it looks
        shutil.copy(usage_log, tmp_path / "usage.log.1")
        with open(usage_log, "r+") as out:
            out.truncate(0)
        append(usage_log, [same] * 150)
        assert wait_for(lambda: local_doow.total("same_lines") == 350, seconds=60), (
            local_doow.total("same_lines"),
            sidecar.log.read_text()[-3000:],
        )
        sidecar.stop()
        append(usage_log, [same] * 50)
        sidecar.start()
        assert wait_for(lambda: local_doow.total("same_lines") == 400, seconds=60)
        time.sleep(2)  # anything still coming would be counted twice
        assert local_doow.total("same_lines") == 400
        assert local_doow.usage(metric="same_lines")[0]["events"] == 400
    finally:
        sidecar.stop()


def checkpoint_barrier(doow: LocalDoow, logs: Path, name: str) -> None:
    """Returns once every line delivered before the call is in the receiver's checkpoint.
    A new file's line is read by a poll that started after the call; the poll before it
    wrote its checkpoint when it ended. The line names its event, so it counts once."""
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    marker = {"metric": "marker", "quantity": 1, "license_id": "lic_side", "event_id": event_id}
    append(logs / f"usage.log.{name}", [json.dumps(marker)])
    assert wait_for(
        lambda: any(e["event_id"] == event_id for e in doow.events(metric="marker")), seconds=30
    )


def receiver_storage(tmp_path: Path) -> list[Path]:
    """The file receiver's storage (its checkpoint and file ids) in the queue directory."""
    return list((tmp_path / "state").glob("receiver_*filelog*"))


def resent(doow: LocalDoow) -> int:
    """Lines of file_line() received so far: stored events and duplicates."""
    events = sum(
        row["events"] for row in doow.usage() if row["metric"] in ("file_lines", "plain_lines")
    )
    return int(events + doow.stats()["duplicates"])


def _file_total(doow: LocalDoow) -> float:
    return doow.total("file_lines") + doow.total("plain_lines")

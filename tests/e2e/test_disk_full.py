"""A durable broker whose disk fills up: a clear error, a clear refusal to clients,
no crash loop, no acknowledged task lost, and work taken again when space returns.

The disk is a small tmpfs of the test's own (mounting one needs root, which the
test tier runs as; where the machine does not allow it the test is skipped and says
why)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from actorq.errors import SubmitRejected
from tests.conftest import wait_until

F = "tests.apps.faulty"


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:  # a container without the right to mount
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(where: Path) -> Path:
    """Take every free byte of the disk `where` is on; returns the filler file."""
    filler = where / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_new_work_clearly_and_resumes_when_space_returns(
        node, client, small_disk):
    # Given a durable node on a small disk, with tasks acknowledged and waiting
    n = node(workers=1, extra=f'\n[storage]\npath = "{small_disk}/actorq.db"\n')
    c = client(n, full_timeout=1.0)
    assert c.pause("default")
    kept = [c.submit(f"{F}:add", (i, i)) for i in range(20)]
    c.flush(timeout=10)
    broker = n.actor_pid("broker")
    # When the disk fills up under a submission (its acknowledgement waits)
    filler = fill(small_disk)
    pending = c.submit(f"{F}:echo", ("x" * 200_000,))
    wait_until(lambda: "the disk is full" in n.log(), 10)
    # Then new work is refused with disk_full (the client tried again for full_timeout)
    with pytest.raises(SubmitRejected) as err:
        c.submit(f"{F}:add", (1, 1)).result(timeout=10)
    assert err.value.code == "disk_full" and "disk is full" in err.value.message
    log = n.log()
    assert "the disk is full" in log and "cannot rollback" not in log
    assert n.actor_pid("broker") == broker and os.path.exists(f"/proc/{broker}")
    # And when space returns, it takes work again, and nothing acknowledged was lost
    filler.unlink()
    wait_until(lambda: _takes_work(c), 15)
    assert c.resume("default")
    assert c.gather(kept, timeout=15) == [2 * i for i in range(20)]
    assert pending.result(timeout=15) == "x" * 200_000
    assert "submissions are taken again" in n.log()


def _takes_work(c) -> bool:
    try:
        c.submit(f"{F}:add", (1, 1), queue="elsewhere").result(timeout=0.5)
    except SubmitRejected:
        time.sleep(0.2)
        return False
    except Exception:  # noqa: BLE001 (accepted: it waits in a queue nobody serves)
        return True
    return True

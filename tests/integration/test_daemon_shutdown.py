"""One ordered shutdown (issue 16): an in-process supervisor on real sockets on 127.0.0.1.

What it proves:
- `Supervisor.shutdown` closes the control gateway itself, whatever called it: afterwards its port
  refuses connections. Before, the gateway closed itself from a module-global task that waited for
  the `stopping` event, so a shutdown without it (an embedding caller, a failed start) left the
  control port listening after the supervisor had stopped.
- the steps run in one order: the control gateway stops accepting, the event stream closes, the
  ring is left, services stop, state is saved, the ring closes, the HTTP gateway closes last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pysup.daemon import Supervisor
from tests.integration.daemons import in_process_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def refuses(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


def record(steps: list[str], obj: Any, method: str, name: str) -> None:
    """Wrap `obj.method` so each call appends `name` to `steps` first."""
    real = getattr(obj, method)

    if asyncio.iscoroutinefunction(real):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            steps.append(name)
            return await real(*args, **kwargs)

        setattr(obj, method, wrapped_async)
    else:

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            steps.append(name)
            return real(*args, **kwargs)

        setattr(obj, method, wrapped)


async def test_shutdown_closes_every_server_in_one_order(tmp_path: Path) -> None:
    s = Supervisor(in_process_settings(tmp_path), env={})
    await s.start()
    ctl_port = s.settings.ctl_addr()[1]
    assert not await refuses(ctl_port), "the control gateway listens once started"
    steps: list[str] = []
    assert s.ctl and s.events and s.ring and s.services and s.http
    record(steps, s.ctl, "close", "ctl.close")
    record(steps, s.events, "close", "events.close")
    record(steps, s.ring, "leave", "ring.leave")
    record(steps, s.services, "stop_all", "services.stop")
    record(steps, s, "save_state", "state.save")
    record(steps, s.ring, "close", "ring.close")
    record(steps, s.http, "close", "http.close")
    assert not s.stopping.is_set()

    await s.shutdown()  # called directly: no signal, no `sup term`

    assert await refuses(ctl_port), "the control port still listens after shutdown"
    assert steps == [
        "ctl.close",
        "events.close",
        "ring.leave",
        "services.stop",
        "state.save",
        "ring.close",
        "http.close",
    ]

"""Where the service layer hands its events, and the events it builds from its own values (pure).

The daemon passes ``EventStream.publish`` down as an ``EventSink``; a service, its coordinator and
the tests that build them alone default to ``no_events``. The builders here keep the publish
points in ``service/`` to one call each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pysup.events.model import Payload, ServiceHealth, ServiceHook

if TYPE_CHECKING:  # the service layer loads with the first plan (issue 18)
    from pysup.service.health import HealthStatus
    from pysup.service.hooks import HookResult

EventSink = Callable[[Payload], object]
"""Takes one event; never blocks and never raises (``EventStream.publish``)."""


def no_events(payload: Payload) -> None:
    """The sink of a service without a supervisor's event stream (unit and service tests)."""


def hook_event(
    service_group: str, hook: str, result: HookResult | None, error: str | None = None
) -> ServiceHook:
    """``service.hook`` for a hook that ran (`result`) or could not start (`error`)."""
    if result is None:
        return ServiceHook(service_group, hook, None, False, 0.0, error)
    return ServiceHook(
        service_group,
        hook,
        result.exit_code,
        result.timed_out,
        round(result.duration_s, 3),
        None,
    )


def health_event(
    service_group: str,
    status: HealthStatus,
    previous: HealthStatus | None,
    result: HookResult | None,
) -> ServiceHealth:
    """``service.health`` for one health check (`result`: the hook's, None if it did not run)."""
    return ServiceHealth(
        service_group,
        status.api_name,
        previous.api_name if previous is not None else None,
        result.exit_code if result is not None else None,
        result.stdout_tail if result is not None else None,
        result.stderr_tail if result is not None else None,
    )

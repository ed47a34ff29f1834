"""The event stream of a supervisor (``GET /events``): what it learns, as Server-Sent Events.

- ``model``: event names and typed payloads (``docs/events.md`` documents them);
- ``translate``: events from the ring's effects and the election's decisions;
- ``history``, ``hub``, ``sse``: the bounded history, client cursors, framing (pure);
- ``stream``: the hub on an asyncio loop; ``web``: the aiohttp handler.

Wiring (the daemon): make one ``EventStream(EventHub(first_id=..., member_id=...))``, call
``publish(payload)`` where the sources are handled, register ``web.add_events_route``, and call
``close()`` first in the ordered shutdown.
"""

from pysup.events.hub import EventHub, EventLimits, HubStats, TooManyClients
from pysup.events.model import BY_NAME, CATEGORIES, EVENT_TYPES, Payload
from pysup.events.sse import ResumePoint, parse_resume
from pysup.events.stream import EventStream

__all__ = [
    "BY_NAME",
    "CATEGORIES",
    "EVENT_TYPES",
    "EventHub",
    "EventLimits",
    "EventStream",
    "HubStats",
    "Payload",
    "ResumePoint",
    "TooManyClients",
    "parse_resume",
]

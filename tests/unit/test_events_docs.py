"""docs/events.md and pysup/events/model.py describe the same events: every name, every field
with its JSON type, and an example line whose payload has exactly the event's fields."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from pysup.events.model import BY_NAME, CATEGORIES, EVENT_TYPES, ConfigRejected, Payload, clip

DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
SECTIONS = dict(re.findall(r"^### `([a-z_.]+)`\n(.*?)(?=^##|\Z)", DOC, re.M | re.S))

JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "tuple[str, ...]": "array of string",
}


def json_type(annotation: str) -> str:
    if annotation.endswith(" | None"):
        return JSON_TYPES[annotation.removesuffix(" | None")] + " or null"
    return JSON_TYPES[annotation]


def test_every_documented_event_exists_and_every_event_is_documented() -> None:
    assert list(SECTIONS) == [t.NAME for t in EVENT_TYPES]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.NAME)
def test_fields_and_example(event_type: type[Payload]) -> None:
    section = SECTIONS[event_type.NAME]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z ]+) \|", section, re.M)
    expected = [(f.name, json_type(str(f.type))) for f in fields(event_type)]
    assert rows == expected
    examples = re.findall(r"^data: (.*)$", section, re.M)
    assert len(examples) == 1
    doc = json.loads(examples[0])
    assert doc["event"] == event_type.NAME
    assert list(doc["data"]) == [name for name, _ in expected]
    # The example's id follows the rule: control events have none, except a reset.
    control = event_type.category() == "stream" and event_type.NAME != "stream.reset"
    assert (doc["id"] is None) == control


def test_names_are_unique_dotted_and_categorised() -> None:
    assert len(BY_NAME) == len(EVENT_TYPES)
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", name) for name in BY_NAME)
    assert CATEGORIES == ("member", "rumor", "election", "config", "file", "service", "stream")


def test_clip_keeps_the_tail() -> None:
    assert clip("short") == "short"
    assert clip(None) is None
    long = "a" * 2000 + "the end"
    clipped = clip(long)
    assert clipped is not None and len(clipped) == 1024 and clipped.endswith("the end")


def test_free_text_in_any_event_is_clipped() -> None:
    e = ConfigRejected("redis.default", "gossip", 4, "x" * 5000 + "why")
    assert len(e.error) == 1024 and e.error.endswith("why")


SAMPLES = {"str": "x", "int": 7, "float": 0.5, "bool": True, "tuple[str, ...]": ("a", "b")}


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.NAME)
def test_data_is_what_asdict_gives(event_type: type[Payload]) -> None:
    """`data()` is a shallow copy of the fields (asdict's deep copy cost 10x on the probe path):
    the same dict for every event, with a sample value of each field's type."""
    values = {f.name: SAMPLES[str(f.type).removesuffix(" | None")] for f in fields(event_type)}
    event = event_type(**values)
    assert event.data() == asdict(event)
    assert list(event.data()) == [f.name for f in fields(event_type)]

"""After start-up the bridge freezes what it built and raises the young GC threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot import bridge_app


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_freezes_its_objects_and_collects_the_young_generation_less_often() -> None:
    gc.set_threshold(700, 10, 10)  # Python's defaults
    before = gc.get_freeze_count()
    bridge_app._freeze_startup_objects()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == (bridge_app.GC_YOUNG_THRESHOLD, 10, 10)
    # between Python's 700 (a Redis batch in flight walked hundreds of times) and 20,000
    # (young collections of 10–34 ms stalled clicks): bot.bridge_app._freeze_startup_objects
    assert bridge_app.GC_YOUNG_THRESHOLD == 5_000

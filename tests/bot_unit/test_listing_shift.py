"""A listing read page by page while tasks leave it still lists every task that stays.

Pages are offsets (factory contract §1.3 ``PaginationParams``): a task decided while page 1 is
being read moves every later task one place forward, so the first task of page 2 slides onto
page 1, already read. :func:`bot.factory.answers.follow_pages` notices that the listing
changed (another ``total``, or a short page that says more follow) and reads it once more —
once only, however much it keeps changing.
"""

from __future__ import annotations

from bot.factory.answers import Page, follow_pages

PAGE = 100


class ShrinkingListing:
    """A factory's pending tasks, paged by offset, some decided after ``decide_after`` reads."""

    def __init__(
        self, count: int, decided: int, *, decide_after: int = 1, with_total: bool = True
    ) -> None:
        self.tasks = [f"t{i:03d}" for i in range(count)]
        self.decided = set(self.tasks[:decided])
        self.decide_after = decide_after
        self.with_total = with_total
        self.reads: list[int] = []

    def live(self) -> list[str]:
        if len(self.reads) <= self.decide_after:
            return self.tasks
        return [t for t in self.tasks if t not in self.decided]

    async def fetch(self, number: int) -> Page:
        self.reads.append(number)
        live = self.live()
        items = live[(number - 1) * PAGE : number * PAGE]
        return Page(
            items=[{"id": i} for i in items],
            page=number,
            total_pages=(len(live) + PAGE - 1) // PAGE,
            has_next=number * PAGE < len(live),
            total=len(live) if self.with_total else None,
        )


async def listed(fetch: ShrinkingListing) -> list[str]:
    ids: list[str] = []
    async for items in follow_pages("tasks", fetch.fetch):
        ids += [item["id"] for item in items]
    return ids


async def test_tasks_decided_while_the_list_is_read_hide_no_other_task() -> None:
    listing = ShrinkingListing(250, decided=10)  # decided on the dashboard after page 1
    ids = await listed(listing)
    still_pending = [t for t in listing.tasks if t not in listing.decided]
    assert set(still_pending) <= set(ids)  # t100 … t109 slid onto page 1 and are listed
    assert len(ids) == len(set(ids))  # each task once


async def test_a_short_page_before_the_end_is_noticed_without_a_total() -> None:
    """A factory that gives no ``total``: page 2 came back shorter than page 1 though more
    follow — the listing shrank under it."""

    class ShortPage(ShrinkingListing):
        async def fetch(self, number: int) -> Page:
            page = await super().fetch(number)
            if len(self.reads) == 2:  # the tasks were decided while page 2 was served
                return Page(page.items[:90], number, page.total_pages, True, None)
            return page

    listing = ShortPage(300, decided=10, decide_after=1, with_total=False)
    ids = await listed(listing)
    still_pending = [t for t in listing.tasks if t not in listing.decided]
    assert set(still_pending) <= set(ids)
    assert len(ids) == len(set(ids))


async def test_a_listing_that_keeps_changing_is_read_once_more_only() -> None:
    listing = ShrinkingListing(250, decided=0)

    async def fetch(number: int) -> Page:
        page = await listing.fetch(number)  # a smaller total on every read
        total = 1_000 - len(listing.reads)
        return Page(page.items, number, page.total_pages, page.has_next, total)

    async for _ in follow_pages("tasks", fetch):
        pass
    assert listing.reads == [1, 2, 3, 1, 2, 3]


async def test_a_listing_that_only_grew_is_read_once() -> None:
    # new tasks only push the others back onto pages not read yet: nothing is missed
    listing = ShrinkingListing(250, decided=0)

    async def fetch(number: int) -> Page:
        page = await listing.fetch(number)
        return Page(page.items, number, page.total_pages, page.has_next, len(listing.reads))

    async for _ in follow_pages("tasks", fetch):
        pass
    assert listing.reads == [1, 2, 3]


async def test_a_listing_that_did_not_change_is_read_once() -> None:
    listing = ShrinkingListing(250, decided=0)
    ids = await listed(listing)
    assert ids == listing.tasks
    assert listing.reads == [1, 2, 3]

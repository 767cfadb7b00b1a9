"""Bundled reminders never exceed Discord's 2000 characters and never cut a line."""

from __future__ import annotations

from bot.ladder import fit_lines


def test_everything_fits_unchanged() -> None:
    assert fit_lines("head", ["a", "b"], limit=2000, more="…and {n} more") == "head\na\nb"


def test_long_lists_end_with_and_n_more_within_the_limit() -> None:
    lines = [f"• task {i:03d} " + "x" * 60 for i in range(100)]
    text = fit_lines("⏰ Reminder: 100 tasks", lines, limit=2000, more="…and {n} more")
    assert len(text) <= 2000
    shown = text.splitlines()[1:-1]
    assert all(line in lines for line in shown)  # whole lines only
    assert text.splitlines()[-1] == f"…and {100 - len(shown)} more"

"""The escalation ladder's adapters: the ladder service (:mod:`escalation.service`) wired to
APScheduler (:mod:`~bot.ladder.timers`), the store, Discord (:mod:`~bot.ladder.announcer`,
:mod:`~bot.ladder.bundles`, :mod:`~bot.ladder.incident`), Twilio and the factory
(:mod:`~bot.ladder.adapters`); :class:`~bot.ladder.runtime.LadderRuntime` is the whole.
"""

from bot.ladder.adapters import ESCALATION_ACTOR
from bot.ladder.runtime import LadderRuntime
from bot.ladder.text import fit_lines
from bot.ladder.timers import WAKE_JOB_ID
from escalation.service import RETRY_DELAYS

__all__ = ["ESCALATION_ACTOR", "RETRY_DELAYS", "WAKE_JOB_ID", "LadderRuntime", "fit_lines"]

"""Reconciliation: nothing the factory waits on falls through, whatever was missed.

:mod:`bot.reconcile.reconciler` compares the factory's truth with the store (at start, after
every WebSocket subscription and on a timer) and re-sends decisions a crash left in flight;
:mod:`bot.reconcile.refs` reads which tasks one of the bot's Discord messages shows, to rebuild
the task → message map when the database was lost.
"""

from bot.reconcile.reconciler import Reconciler, ReconcileReport
from bot.reconcile.refs import MessageRefs, message_refs

__all__ = ["MessageRefs", "ReconcileReport", "Reconciler", "message_refs"]

"""Reconciliation: nothing the factory waits on falls through, whatever was missed.

:mod:`bot.reconcile.reconciler` compares the factory's truth with the store (at start, after
every WebSocket subscription and on a timer) and re-sends decisions a crash left in flight;
:mod:`bot.reconcile.rebuild` rebuilds the task → message map from the tasks channel when the
database was lost, reading which tasks each of the bot's messages shows with
:mod:`bot.reconcile.refs`.
"""

from bot.reconcile.rebuild import ChannelRebuild
from bot.reconcile.reconciler import Reconciler, ReconcileReport
from bot.reconcile.refs import MessageRefs, message_refs

__all__ = ["ChannelRebuild", "MessageRefs", "ReconcileReport", "Reconciler", "message_refs"]

"""Approvals behind tasks and the deploy approvals collected for them (deploy guard)."""

from __future__ import annotations

import json

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from escalation.deploy_guard import DeployApproval
from escalation.models import Approval

from . import tables as t
from .base import StoreBase
from .rows import approvers_of

__all__ = ["ApprovalsMixin"]


class ApprovalsMixin(StoreBase):
    """The store's approval methods (see :class:`bot.store.Store`)."""

    async def set_approval(
        self, task_id: str, approval: Approval | None, *, unread: bool = False
    ) -> None:
        """Remember the approval behind ``task_id`` (``None`` with ``unread=True``: the bridge
        looked and could not read it, which guards the task; ``None`` alone: it has none).

        Deploy approvals already collected are kept.
        """
        text = approval.model_dump_json(by_alias=True) if approval is not None else None
        now = self._clock()

        def work(conn: Connection) -> None:
            changed = conn.execute(
                update(t.task_approvals)
                .where(t.task_approvals.c.task_id == task_id)
                .values(
                    approval=text,
                    approval_unread=int(unread),
                    version=t.task_approvals.c.version + 1,
                    updated_at=now,
                )
            ).rowcount
            if not changed:
                conn.execute(
                    insert(t.task_approvals).values(
                        task_id=task_id,
                        approval=text,
                        approval_unread=int(unread),
                        approvers="[]",
                        version=0,
                        updated_at=now,
                    )
                )

        try:
            await self._write_task(task_id, work)
        except IntegrityError:  # another process inserted the row first: update it
            await self._write_task(task_id, work)

    async def add_deploy_approval(
        self, task_id: str, approval: DeployApproval
    ) -> tuple[bool, tuple[DeployApproval, ...]]:
        """Add one person's deploy approval of ``task_id`` unless they approved already.

        A compare-and-set on the row's ``version``: two approvals at once from two processes
        both land (the loser re-reads and tries again).

        Returns
        -------
        tuple
            ``(added, approvals)``: ``added`` is ``False`` when this Discord user had approved
            already; ``approvals`` is every approval collected, oldest first.

        Raises
        ------
        RuntimeError
            When 20 compare-and-set attempts in a row lost to concurrent approvals.
        sqlalchemy.exc.SQLAlchemyError
            When the database takes no write (the caller answers that nothing was recorded).
        """
        now = self._clock()

        def work(conn: Connection) -> tuple[bool, tuple[DeployApproval, ...]] | None:
            row = conn.execute(
                select(t.task_approvals.c.approvers, t.task_approvals.c.version).where(
                    t.task_approvals.c.task_id == task_id
                )
            ).first()
            if row is None:
                conn.execute(
                    insert(t.task_approvals).values(
                        task_id=task_id,
                        approval=None,
                        approval_unread=0,
                        approvers=json.dumps([approval.to_wire()]),
                        version=0,
                        updated_at=now,
                    )
                )
                return True, (approval,)
            current = approvers_of(row.approvers)
            if any(a.discord_user_id == approval.discord_user_id for a in current):
                return False, current
            collected = (*current, approval)
            changed = conn.execute(
                update(t.task_approvals)
                .where(
                    and_(
                        t.task_approvals.c.task_id == task_id,
                        t.task_approvals.c.version == row.version,
                    )
                )
                .values(
                    approvers=json.dumps([a.to_wire() for a in collected]),
                    version=row.version + 1,
                    updated_at=now,
                )
            ).rowcount
            return (True, collected) if changed else None

        for _ in range(20):
            try:
                result = await self._write_task(task_id, work)
            except IntegrityError:
                continue
            if result is not None:
                return result
        raise RuntimeError(f"could not record the deploy approval of task {task_id}")

"""What a :class:`~batching.batcher.Batcher` asks its adapter to do: post alone, post, edit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Action", "EditBatch", "PostBatch", "PostSingle"]


@dataclass(frozen=True)
class PostSingle:
    """Post the normal single-task message for a task whose group wait ended with no company.

    Attributes
    ----------
    task_id : str
        The task. The batcher forgets it; nothing is reported back.
    """

    task_id: str


@dataclass(frozen=True)
class PostBatch:
    """Create a batch message listing ``task_ids``, then report it with :meth:`Batcher.posted`.

    Attributes
    ----------
    batch_id : str
        Opaque id of the message-to-be (at most 80 characters), unique per batcher state.
    key : str
        The batch key shared by all items.
    task_ids : tuple of str
        The items, in arrival order (2 to ``max_items``).
    """

    batch_id: str
    key: str
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class EditBatch:
    """Edit a posted batch message so that it lists exactly ``task_ids``.

    Attributes
    ----------
    batch_id : str
        The message's batch id (from its :class:`PostBatch`).
    key : str
        The batch key.
    task_ids : tuple of str
        The full item list after the additions: the previous items in the same order (decided
        ones included), then the new ones. Idempotent: re-issuing it is harmless.
    message_ref : str
        The reference the adapter gave to :meth:`Batcher.posted`.
    """

    batch_id: str
    key: str
    task_ids: tuple[str, ...]
    message_ref: str = ""


#: Everything a :class:`Batcher` method may ask the adapter to do.
Action: TypeAlias = PostSingle | PostBatch | EditBatch

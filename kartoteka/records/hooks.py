"""The stages at which the record service lets automation in (docs/automation.md, "Order of execution").

The service knows nothing of rules: it calls `SaveHooks` at fixed points of every save, whatever its source, and
the rules engine (kartoteka/rules/, one floor above) implements them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal

if TYPE_CHECKING:
    from kartoteka.records.pipeline import Prepared
    from kartoteka.records.service import Change

# Where a change comes from, as rule conditions see it through source().
SOURCES = ("ui", "api", "import", "rule", "schedule", "manual", "merge", "restore")


@dataclass(frozen=True)
class Origin:
    """Where a save comes from, and the chain of rule runs it belongs to.

    `chain` is the rules engine's bookkeeping for one originating save (which rules fired on which records), shared
    by every save the rules make from it; `depth` counts the rule-made saves between this one and the origin.
    `automation` False skips the rules (an import may choose to, explicitly).
    """

    source: str = "api"
    depth: int = 0
    chain: Any = None
    automation: bool = True
    rule: str | None = None  # the rule making this save, when source is "rule"
    batch: str | None = None  # the import or merge this save belongs to: its journal rows carry it, undo finds them
    reverts: int | None = None  # a revert: the version of the record it goes back to

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source '{self.source}'; known: {', '.join(SOURCES)}")


API = Origin("api")
UI = Origin("ui")


@dataclass
class SaveEvent:
    """One save as the hooks see it: before the write (`prepared` holds the merged values, changeable) and after."""

    kind: str  # created | updated | deleted | restored
    entity: EntityDef
    user: Principal
    origin: Origin
    stored: Mapping[str, Any] | None
    system: Mapping[str, Any]
    prepared: Prepared | None = None
    owner: int | None = None  # set by a rule that assigns the record to someone
    record_id: int | None = None
    # What the engine carries from before the write to after it (rules that fired, actions left to run).
    state: dict[str, Any] = field(default_factory=dict)
    # The saving transaction when it is open before the write (an update; a create in a caller's transaction, as an
    # import's batch): before-save rules read through it, and so see what earlier saves of the batch wrote.
    conn: sa.Connection | None = None


class SaveHooks(Protocol):
    """What the record service calls; the rules engine implements it."""

    def wants(self, entity: EntityDef, origin: Origin) -> bool:
        """True when saves of `entity` from `origin` have anything to run (else no event is made)."""

    def before_save(self, event: SaveEvent) -> None:
        """Inside the pipeline, after parsing and merging, before formulas and validation: may change the values,
        add errors (a refusal) or choose an owner."""

    def after_write(self, conn: sa.Connection, change: Change, event: SaveEvent) -> None:
        """In the saving transaction, after the write: tasks, notifications, other records, the outbox."""

    def preview(self, event: SaveEvent, changed: frozenset[str]) -> tuple[str, ...]:
        """The names of the rules a save of the event's pending values would fire (a form shows them)."""

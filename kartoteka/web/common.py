"""What the card pages share: their blueprint, the signed-in user, access to a card type, the board's field."""

from __future__ import annotations

from flask import Blueprint, g, request

from kartoteka.extensions import platform
from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal
from kartoteka.records.scopes import require, scopes_for

cards = Blueprint("cards", __name__, url_prefix="/cards")


def current_user() -> Principal:
    """The signed-in user (the pages are behind login_required)."""
    return g.user  # type: ignore[no-any-return]


def entity_for(name: str, action: str = "read") -> EntityDef:
    """The entity, if the user may do `action` with some of its records (PermissionDenied otherwise)."""
    entity = platform.service.entity(name)
    require(platform.state.metadata, current_user(), entity, action)
    return entity


def scopes(entity: EntityDef) -> dict[str, str]:
    """The user's scope per action on `entity`, for showing only the buttons that will work."""
    return scopes_for(platform.state.metadata, current_user(), entity)


def submitted_version() -> int | None:
    """The version a browser form says it was loaded at; None when it is missing or not a version."""
    text = request.form.get("version", "")
    return int(text) if text.isdigit() and text.isascii() and len(text) < 10 else None


def board_field(entity: EntityDef) -> str | None:
    """The field a kanban board groups by (metadata's `board.group`, by default `stage`, `status` or the first
    select); None when the card has no board."""
    return entity.board.group

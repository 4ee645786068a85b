"""The API's blueprint and its signed-in user, shared by the record and file routes."""

from __future__ import annotations

from flask import Blueprint, g

from kartoteka.records.model import Principal

api = Blueprint("api", __name__, url_prefix="/api/v1")


def current_user() -> Principal:
    """The token's user (set by the blueprint's authentication hook)."""
    return g.user  # type: ignore[no-any-return]

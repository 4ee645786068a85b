"""The platform extension: metadata, engine and record service, created once per app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g

from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef, Metadata
from kartoteka.records.service import RecordService
from kartoteka.rules.engine import RuleEngine
from kartoteka.storage.database import create_engine
from kartoteka.storage.reading import close_read_scope, open_read_scope


@dataclass
class PlatformState:
    """What one app holds: settings, clock, metadata, engine, service."""

    settings: Settings
    clock: Clock
    metadata: Metadata
    engine: sa.Engine
    service: RecordService


class Platform:
    """Flask extension object, created once and init_app'd (metadata errors stop the app from starting)."""

    def init_app(self, app: Flask, settings: Settings, clock: Clock) -> None:
        """Load metadata and connect to the database for `app`."""
        context = ParseContext(phone_region=settings.phone_region)
        metadata = load_metadata(settings.config_dir, context)
        engine = create_engine(settings.database_url)
        service = RecordService(metadata, engine, clock, context)
        RuleEngine(metadata, clock, engine, display=_display, max_depth=settings.rule_depth).attach(service)
        app.extensions["kartoteka"] = PlatformState(settings, clock, metadata, engine, service)
        # Every read of a request shares one connection (storage/reading.py), closed when the request ends.
        app.before_request(_open_read_scope)
        app.teardown_request(_close_read_scope)

    @property
    def state(self) -> PlatformState:
        """The state of the current app."""
        return current_app.extensions["kartoteka"]

    @property
    def service(self) -> RecordService:
        """The record service of the current app."""
        return self.state.service


platform = Platform()


def _display(field: FieldDef, value: Any, language: str) -> str:
    """A value in rule texts as the reader's language writes it (kartoteka/web/formatting.py)."""
    from kartoteka.web.formatting import format_value  # the web layer's formatter, lent to the rules engine

    return format_value(field, value, language)


def _open_read_scope() -> None:
    g._kartoteka_read_scope = open_read_scope(platform.state.engine)


def _close_read_scope(_: BaseException | None) -> None:
    token = g.pop("_kartoteka_read_scope", None)
    if token is not None:
        close_read_scope(token)

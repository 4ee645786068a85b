"""The platform extension: metadata, engine and record service, created once per app."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app

from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import Metadata
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine


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
        app.extensions["kartoteka"] = PlatformState(settings, clock, metadata, engine, service)

    @property
    def state(self) -> PlatformState:
        """The state of the current app."""
        return current_app.extensions["kartoteka"]

    @property
    def service(self) -> RecordService:
        """The record service of the current app."""
        return self.state.service


platform = Platform()

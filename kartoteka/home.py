"""The root URL: what this server is and where its API starts (the web UI arrives with its own blueprint)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for

from kartoteka.extensions import platform

home = Blueprint("home", __name__)


@home.get("/")
def index() -> Response:
    """A machine-readable index of the server."""
    from kartoteka import __version__

    entities = {name: url_for("api.list_records", entity_name=name) for name in platform.state.metadata.entities}
    return jsonify({"name": "Kartoteka", "version": __version__, "api": url_for("api.list_entities"),
                    "records": entities, "authentication": "Authorization: Bearer <token from `kartoteka token "
                    "create NAME`>"})

"""The root URL: browsers are sent to the cards, API clients get what this server is and where its API starts."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, request, url_for

from kartoteka.extensions import platform

home = Blueprint("home", __name__)


@home.get("/")
def index() -> Response:
    """Browsers go to the cards; API clients get a machine-readable index of the server."""
    from kartoteka import __version__

    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect(url_for("cards.index"))  # type: ignore[return-value]

    entities = {name: url_for("api.list_records", entity_name=name) for name in platform.state.metadata.entities}
    return jsonify({"name": "Kartoteka", "version": __version__, "api": url_for("api.list_entities"),
                    "records": entities, "authentication": "Authorization: Bearer <token from `kartoteka token "
                    "create NAME`>"})

"""The root URL: browsers are sent to the cards, API clients get what this server is and where its API starts."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, request, url_for

home = Blueprint("home", __name__)


@home.get("/")
def index() -> Response:
    """Browsers go to the cards; API clients get a machine-readable index of the server."""
    from kartoteka import __version__

    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect(url_for("cards.index"))  # type: ignore[return-value]

    # No card names here: the root answers anyone, and which cards exist (hr_record...) is for those signed in;
    # /api/v1/entities lists the ones the token's user may read.
    return jsonify({"name": "Kartoteka", "version": __version__, "api": url_for("api.list_entities"),
                    "records": url_for("api.list_entities").replace("entities", "records") + "/<entity>",
                    "authentication": "Authorization: Bearer <token from `kartoteka token create NAME`>"})

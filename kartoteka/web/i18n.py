"""Interface texts for callers that name the language themselves; kartoteka.i18n holds the catalogues."""

from __future__ import annotations

from kartoteka.i18n import DEFAULT_LANGUAGE, LANGUAGES, pick_language, translate

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "pick_language", "translate"]

"""One exception hierarchy for the whole platform; the web layer maps it to HTTP in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kartoteka.messages import N_, Message


class KartotekaError(Exception):
    """Base of every error the platform raises on purpose."""

    status = 500
    title = N_("Internal error")

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class MetadataError(KartotekaError):
    """The metadata under the config directory is broken; `problems` lists every finding."""

    title = N_("Invalid metadata")

    def __init__(self, problems: Sequence[object]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RecordValidationError(KartotekaError):
    """A record failed validation; `errors` maps a field name (or '_record') to messages."""

    status = 422
    title = N_("Invalid record")

    def __init__(self, errors: Mapping[str, Sequence[str]], detail: str = "", state: object | None = None) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        # The record service's evaluated form (records.model.FormState) of the refused save, when it ran one:
        # a form shows it as is instead of evaluating the input again.
        self.state = state
        count = sum(len(v) for v in self.errors.values())
        super().__init__(detail or Message.counted("record.invalid", "The record has {count} invalid value.",
                                                   "The record has {count} invalid values.", count=count))


class BadRequest(KartotekaError):
    """The request itself is malformed (bad filter, bad cursor, bad JSON)."""

    status = 400
    title = N_("Bad request")


class CsrfError(KartotekaError):
    """A form of the web UI came back without the session's CSRF token (expired or forged)."""

    status = 400
    title = N_("Form expired")

    def __init__(self) -> None:
        super().__init__(Message("form.expired", "The form has expired (security token missing or wrong). Reload the "
                                 "page and submit it again."))


class NotFound(KartotekaError):
    """The entity or record does not exist (or is not visible to the user)."""

    status = 404
    title = N_("Not found")


class Conflict(KartotekaError):
    """A stale version or a uniqueness race: the client must reload and retry."""

    status = 409
    title = N_("Conflict")

    def __init__(self, detail: str = "", current_version: int | None = None) -> None:
        super().__init__(detail)
        self.current_version = current_version


class AuthenticationRequired(KartotekaError):
    """No valid credentials were presented."""

    status = 401
    title = N_("Authentication required")


class PermissionDenied(KartotekaError):
    """The user is known but may not do this."""

    status = 403
    title = N_("Forbidden")


class IndexBuildError(KartotekaError):
    """Stored data does not fit an index the metadata asks for (repeated unique values, a changed type)."""

    title = N_("Index cannot be built")


class RuleRefused(KartotekaError):
    """A rule run by hand did not do its work: its condition does not hold, it blocked, or an action failed."""

    status = 422
    title = N_("Rule not run")

    def __init__(self, detail: str, run: object | None = None) -> None:
        super().__init__(detail)
        self.run = run  # the run as logged (kartoteka.rules.runlog.Run)

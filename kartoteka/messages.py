"""Messages by code: what the record service, the API and the UI tell people, as a code with parameters.

As Django's `ValidationError(message, code, params)`: a `Message` is its English text (it *is* a `str`, so logs,
the command line and code that only reads text need nothing more) and carries a stable `code` for API clients,
its English `template` (the gettext msgid its translations are found by, in `kartoteka/translations/`) and the
`params` the template is filled with. `localize` renders one in a language: the template is translated by the
catalogue and each parameter is written as that language writes it (numbers, dates, labels, nested messages).

No Flask here: the web layer and the API pass in the translations of the request's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LANGUAGES", "N_", "Message", "Translations", "catalogue", "json_params", "localize", "message_of",
           "translate"]

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"


def N_(template: str) -> str:
    """Mark an English text for the catalogue without translating it here."""
    return template


class Translations(Protocol):
    """What `localize` needs of a gettext catalogue (babel.support.Translations, gettext.NullTranslations)."""

    def gettext(self, message: str) -> str:
        """The translation of `message`, or `message` itself."""
        ...

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The form of a counted message `n` asks for."""
        ...


class Message(str):
    """An English message text that also carries its code, its template and its parameters."""

    code: str
    template: str
    plural: str | None
    params: Mapping[str, Any]

    def __new__(cls, code: str, template: str, /, plural: str | None = None, **params: Any) -> Message:
        """`Message("number.invalid", "'{text}' is not a number.", text="12abc")`; with `plural`, {count} picks."""
        shape = plural if plural is not None and params.get("count") != 1 else template
        self = super().__new__(cls, shape.format_map({k: _english(v) for k, v in params.items()}))
        self.code = code
        self.template = template
        self.plural = plural
        self.params = params
        return self

    @classmethod
    def counted(cls, code: str, singular: str, plural: str, /, count: int, **params: Any) -> Message:
        """A message with a count: `Message.counted(code, "{count} file", "{count} files", count=n)`."""
        return cls(code, singular, plural, count=count, **params)

    def __repr__(self) -> str:
        return f"Message({self.code!r}, {str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self.code, self.template, self.plural, dict(self.params))


def _rebuild(code: str, template: str, plural: str | None, params: dict[str, Any]) -> Message:
    """Unpickle a Message (multiprocessing, caches)."""
    return Message(code, template, plural, **params)


def _english(value: Any) -> str:
    """A parameter as the English text writes it."""
    if isinstance(value, list | tuple):
        return ", ".join(_english(v) for v in value)
    if isinstance(value, Decimal):
        return _plain_decimal(value)
    get = getattr(value, "get", None)
    if callable(get) and hasattr(value, "texts"):  # a metadata Label
        return str(get("en"))
    return str(value)


def _plain_decimal(value: Decimal) -> str:
    """'0' for Decimal('0.00'), '1500.5' for Decimal('1500.50'): a limit as people write it."""
    if not value.is_finite():
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def message_of(error: BaseException) -> str:
    """The message an exception was raised with, keeping its code (str(error) would make it plain text)."""
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def localize(message: str, translations: Translations, language: str) -> str:
    """`message` in `language`: a Message from its translated template, a plain text as the catalogue has it."""
    if not isinstance(message, Message):
        return translations.gettext(message) if message else message
    if message.plural is not None and isinstance(message.params.get("count"), int):
        shape = translations.ngettext(message.template, message.plural, message.params["count"])
    else:
        shape = translations.gettext(message.template)
    values = {key: _localized(value, translations, language) for key, value in message.params.items()}
    try:
        return shape.format_map(values)
    except (KeyError, IndexError, ValueError):  # a translation naming a placeholder the template lacks
        return message.template.format_map(values)


def _localized(value: Any, translations: Translations, language: str) -> str:
    """A parameter as `language` writes it."""
    if isinstance(value, Message):
        return localize(value, translations, language)
    if isinstance(value, list | tuple):
        return ", ".join(_localized(v, translations, language) for v in value)
    if isinstance(value, int):  # bool too
        return str(value)  # counts, ids and positions: never grouped ("#1234", not "#1 234")
    if isinstance(value, Decimal | float):
        from babel.numbers import format_decimal  # Babel, not Flask: the core may format numbers

        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        if not number.is_finite() or abs(number.adjusted()) > 30:
            return _plain_decimal(number)
        return format_decimal(number.normalize() if number == number.to_integral() else number, locale=language,
                              decimal_quantization=False)
    if isinstance(value, datetime):
        from babel.dates import format_datetime

        return format_datetime(value, format="medium", locale=language)
    if isinstance(value, date):
        from babel.dates import format_date

        return format_date(value, format="medium", locale=language)
    get = getattr(value, "get", None)
    if callable(get) and hasattr(value, "texts"):  # a metadata Label
        return str(get(language))
    return str(value)


def json_params(message: str) -> dict[str, Any]:
    """A Message's parameters as JSON values (numbers as strings keep their digits; labels in English)."""
    if not isinstance(message, Message):
        return {}
    return {key: _json_value(value) for key, value in message.params.items()}


def _json_value(value: Any) -> Any:
    """One parameter as a JSON value."""
    if isinstance(value, bool | int | str) or value is None:
        return str(value) if isinstance(value, Message) else value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Decimal):
        return _plain_decimal(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return _english(value)


@lru_cache(maxsize=len(LANGUAGES))
def catalogue(language: str) -> Translations:
    """The compiled gettext catalogue of `language` (English, and any language without one: the texts as they are)."""
    from babel.support import NullTranslations
    from babel.support import Translations as BabelTranslations

    if language not in LANGUAGES or language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return BabelTranslations.load(str(TRANSLATIONS_DIR), [language], DOMAIN)


def translate(language: str, message: str, **values: Any) -> str:
    """`message` (a Message, or an English text with {placeholders} filled from `values`) in `language`."""
    if not isinstance(message, str) or not message:
        return message
    if isinstance(message, Message):
        return localize(message, catalogue(language), language)
    text = catalogue(language).gettext(message)
    return text.format(**values) if values else text


class StoredLabel:
    """A metadata Label read back from a stored message: its texts by language."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)

    def get(self, language: str = "en") -> str:
        """The text in `language`, else English, else any."""
        return self.texts.get(language) or self.texts.get("en") or next(iter(self.texts.values()), "")

    def __str__(self) -> str:
        return self.get()


def stored_message(message: str) -> dict[str, Any]:
    """A message as JSON to store (a record's flags): code, template and parameters, nested messages too."""
    if not isinstance(message, Message):
        return {"message": str(message)}
    stored: dict[str, Any] = {"message": str(message), "code": message.code, "template": message.template,
                              "params": {key: _stored_param(value) for key, value in message.params.items()}}
    if message.plural is not None:
        stored["plural"] = message.plural
    return stored


def _stored_param(value: Any) -> Any:
    if isinstance(value, Message):
        return {"message": stored_message(value)}
    if hasattr(value, "texts") and isinstance(getattr(value, "texts", None), Mapping):
        return {"label": dict(value.texts)}
    if isinstance(value, list | tuple):
        return [_stored_param(v) for v in value]
    return _json_value(value)


def message_from_stored(stored: Mapping[str, Any]) -> str:
    """The message `stored_message` stored (a Message again when it has its code and template; else its text)."""
    code, template, text = stored.get("code"), stored.get("template"), stored.get("message")
    params = stored.get("params")
    if isinstance(code, str) and isinstance(template, str) and isinstance(params, Mapping):
        plural = stored.get("plural") if isinstance(stored.get("plural"), str) else None
        try:
            return Message(code, template, plural, **{str(k): _param_from_stored(v) for k, v in params.items()})
        except (KeyError, IndexError, ValueError, TypeError):  # a template and parameters that no longer fit
            pass
    return text if isinstance(text, str) else ""


def _param_from_stored(value: Any) -> Any:
    if isinstance(value, Mapping) and isinstance(value.get("message"), Mapping):
        return message_from_stored(value["message"])
    if isinstance(value, Mapping) and isinstance(value.get("label"), Mapping):
        return StoredLabel(value["label"])
    if isinstance(value, list):
        return [_param_from_stored(v) for v in value]
    return value


def message_code(message: str) -> str:
    """The code of a message; 'message' for a text that carries none."""
    return message.code if isinstance(message, Message) else "message"

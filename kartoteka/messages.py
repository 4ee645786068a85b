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
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LANGUAGES", "N_", "ByteSize", "Message", "Translations", "catalogue", "json_params", "localize",
           "message_of", "translate"]

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"


def N_(template: str) -> str:
    """Mark an English text for the catalogue without translating it here."""
    return template


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a counted English text (singular and plural) for the catalogue without translating it here."""
    return singular, plural


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


class ByteSize(int):
    """A size in bytes as a message parameter: '1.5 MiB' in English, «1,5 МиБ» in Russian, the byte count in JSON.

    `ByteSize.limit(n)` is a limit: rounded down, it never reads more than it is ("at most 1.9 MiB" is kept).
    `ByteSize.over(n, limit)` is a size refused for passing `limit`: it is written with as many decimals as it
    takes to read more than the limit does (21,000,000 bytes over 20 MiB is "20.03 MiB", not "20 MiB").
    """

    above: int | None  # the limit this size passes, or None
    at_most: bool  # a limit: rounded down

    def __new__(cls, size: int, /, above: int | None = None, at_most: bool = False) -> ByteSize:
        self = super().__new__(cls, size)
        self.above = above
        self.at_most = at_most
        return self

    @classmethod
    def limit(cls, size: int) -> ByteSize:
        """A limit in bytes, rounded down when written."""
        return cls(size, at_most=True)

    @classmethod
    def over(cls, size: int, limit: int) -> ByteSize:
        """A size refused for passing `limit`: never written as the limit or less."""
        return cls(size, above=limit)

    def __reduce__(self) -> tuple[Any, ...]:
        return ByteSize, (int(self), self.above, self.at_most)

    def parts(self) -> tuple[Decimal, str]:
        """The amount and its unit ("B", "KiB", "MiB", "GiB", "TiB") the size is written in."""
        size = int(self)
        unit = _size_unit(size)
        if unit == 0:
            return Decimal(size), _UNITS[0]
        scale = Decimal(1024) ** unit
        if self.above is None or size <= self.above:
            return _rounded(Decimal(size) / scale, 1, self.at_most), _UNITS[unit]
        amount, limit = ByteSize.limit(self.above).parts()
        shown = amount * (Decimal(1024) ** _UNITS.index(limit))  # the limit as its text says, in bytes
        for places in range(1, 16):
            written = _rounded(Decimal(size) / scale, places)
            if written * scale > shown:
                return written, _UNITS[unit]
        return Decimal(size), _UNITS[0]  # a byte over a limit of terabytes: the exact count

    def text(self, translations: Translations | None = None, language: str = "en") -> str:
        """The size as `language` writes it ('1.5 MiB'; the catalogue's units)."""
        amount, unit = self.parts()
        if unit == "B":
            count = int(amount)
            singular, plural = _BYTES
            shape = plural if count != 1 else singular
            if translations is not None:
                shape = translations.ngettext(singular, plural, count)
            return shape.format(count=count)
        if translations is None or language == DEFAULT_LANGUAGE:
            number = _plain_decimal(amount)
        else:
            from babel.numbers import format_decimal

            number = format_decimal(amount, locale=language, group_separator=False, decimal_quantization=False)
        shape = _UNIT_TEXTS[unit]
        return (translations.gettext(shape) if translations is not None else shape).format(size=number)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"ByteSize({int(self)})"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_BYTES = Nn_("{count} byte", "{count} bytes")
_UNIT_TEXTS = {"KiB": N_("{size} KiB"), "MiB": N_("{size} MiB"), "GiB": N_("{size} GiB"), "TiB": N_("{size} TiB")}


def _size_unit(size: int) -> int:
    """The index in _UNITS of the unit a size is written in: the largest it makes at least one of."""
    unit = 0
    while unit < len(_UNITS) - 1 and size >= 1024 ** (unit + 1):
        unit += 1
    return unit


def _rounded(amount: Decimal, places: int, down: bool = False) -> Decimal:
    """`amount` to `places` decimals (rounded down for a limit), without trailing zeros ("2.0" is "2")."""
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN if down else ROUND_HALF_EVEN)
    return rounded.normalize() if rounded == rounded.to_integral() else rounded


def _rebuild(code: str, template: str, plural: str | None, params: dict[str, Any]) -> Message:
    """Unpickle a Message (multiprocessing, caches)."""
    return Message(code, template, plural, **params)


def _english(value: Any) -> str:
    """A parameter as the English text writes it."""
    if isinstance(value, list | tuple):
        return ", ".join(_english(v) for v in value)
    if isinstance(value, ByteSize):
        return value.text()
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
    if isinstance(value, ByteSize):
        return value.text(translations, language)
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
    if isinstance(value, ByteSize):
        return int(value)  # the byte count
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
    if isinstance(value, ByteSize):
        return {"bytes": int(value), "above": value.above, "at_most": value.at_most}
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
    if isinstance(value, Mapping) and isinstance(value.get("bytes"), int):
        above = value.get("above")
        return ByteSize(value["bytes"], above if isinstance(above, int) else None, value.get("at_most") is True)
    if isinstance(value, list):
        return [_param_from_stored(v) for v in value]
    return value


def message_code(message: str) -> str:
    """The code of a message; 'message' for a text that carries none."""
    return message.code if isinstance(message, Message) else "message"

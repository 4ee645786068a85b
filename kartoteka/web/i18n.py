"""Interface texts in English and Russian; metadata labels carry their own translations.

Messages are keyed by their English text, so a missing translation shows English, never a key.
Messages of the record service carry values ("'12abc' is not a number."): PATTERNS holds their
English shape with {placeholders}, matched once each and refilled in the translation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from kartoteka.metadata.fieldtypes import FIELD_TYPES

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"

RU: Mapping[str, str] = {
    # sign-in
    "Sign in": "Вход",
    "Sign out": "Выйти",
    "User name": "Имя пользователя",
    "Password": "Пароль",
    "Wrong user name or password.": "Неверное имя пользователя или пароль.",
    "Too many failed sign-in attempts. Try again in {minutes} min.":
        "Слишком много неудачных попыток входа. Повторите через {minutes} мин.",
    "The form has expired (security token missing or wrong). Reload the page and submit it again.":
        "Форма устарела (нет или неверен ключ безопасности). Обновите страницу и отправьте её снова.",
    "Please sign in to continue.": "Войдите, чтобы продолжить.",
    "Authentication required": "Нужно войти",
    "Too many requests": "Слишком много запросов",
    "Too many sign-in requests from your address. Try again in a minute.":
        "Слишком много попыток входа с вашего адреса. Попробуйте через минуту.",
    "This form did not come from a page of this site (its Referer header is missing or names another host). "
    "Reload the page and send it again.": "Форма пришла не со страницы этого сайта (заголовок Referer пуст или "
    "называет другой адрес). Обновите страницу и отправьте форму снова.",
    # flags left by saves of users who could not see the fields
    "Needs attention": "Требует внимания",
    # edit conflicts and versions
    "The card was saved meanwhile (in another tab or by someone else); the board now shows it as saved. Move it "
    "again if you still want to.": "Тем временем карточку сохранили (в другой вкладке или другой сотрудник); "
    "на доске она теперь такая, как сохранена. Перенесите её снова, если это ещё нужно.",
    "The card cannot be saved in that column as it is: the form shows what to fill in or fix.":
        "В этой колонке карточку нельзя сохранить как есть: форма покажет, что заполнить или исправить.",
    "you, in another tab": "вы, в другой вкладке",
    "someone else": "другой сотрудник",
    "Take the saved value: «{value}»": "Взять сохранённое: «{value}»",
    "Take the saved value: empty": "Взять сохранённое: пусто",
    "{name} (deactivated)": "{name} (отключён)",
    "'{name}' is not a field a board groups by.": "По полю «{name}» доска не группируется.",
    "Meanwhile «{value}» was saved here ({who}); keep yours or take the saved value.":
        "Тем временем здесь сохранили «{value}» ({who}); оставьте своё значение или возьмите сохранённое.",
    "Meanwhile this field was emptied ({who}); keep yours or take the saved value.":
        "Тем временем это поле очистили ({who}); оставьте своё значение или возьмите сохранённое.",
    "The saved value is in the form now; save to keep it.": "Сохранённое значение теперь в форме; сохраните, "
                                                            "чтобы оставить его.",
    "You saved this card in another tab meanwhile.": "Тем временем вы сохранили эту карточку в другой вкладке.",
    "{name} saved this card while you were editing it.": "Пока вы редактировали, карточку сохранил(а) {name}.",
    "The form shows the saved values with your changes on top; check the marked fields and save again.":
        "В форме — сохранённые значения с вашими изменениями поверх; проверьте отмеченные поля и сохраните снова.",
    "The form shows the saved values with your changes on top; none of the fields you changed was changed there. "
    "Check and save again.": "В форме — сохранённые значения с вашими изменениями поверх; поля, которые вы меняли, "
                             "там не менялись. Проверьте и сохраните снова.",
    "The form did not say which version of the card it changes. It now shows the saved card with your changes "
    "on top; check them and save again.": "Форма не указала, какую версию карточки она меняет. Теперь в ней "
    "сохранённая карточка с вашими изменениями поверх; проверьте их и сохраните снова.",
    "The request did not say which version of the card it deletes; reload the card and delete it again.":
        "Запрос не указал, какую версию карточки он удаляет; обновите карточку и удалите её снова.",
    "The move did not say which version of the card it changes; reload the board and move the card again.":
        "Перемещение не указало версию карточки; обновите доску и переместите карточку снова.",
    "Someone who cannot see these fields saved the card; the next save by someone who can must fix them.":
        "Карточку сохранил сотрудник, который не видит этих полей; следующее сохранение тем, кто их видит, должно "
        "их исправить.",
    "You have signed out.": "Вы вышли из системы.",
    # user administration
    "Users": "Пользователи",
    "Users, their sessions and sign-in locks": "Пользователи, их сеансы и блокировки входа",
    "Name": "Имя",
    "Roles": "Роли",
    "Active sessions": "Активные сеансы",
    "Sign-in lock": "Блокировка входа",
    "Actions": "Действия",
    "deactivated": "отключён",
    "Not locked": "Не заблокирован",
    "since {time}": "с {time}",
    "last seen {time}": "последний запрос {time}",
    "Sign out everywhere": "Выйти на всех устройствах",
    "Unlock": "Разблокировать",
    "{name} is signed out everywhere ({count} sessions ended).":
        "{name}: выход выполнен на всех устройствах (завершено сеансов: {count}).",
    "Only administrators may manage users.": "Управлять пользователями могут только администраторы.",
    "There is no such active user.": "Такого активного пользователя нет.",
    "Waits until {until} (UTC) from 1 address": "Ждёт до {until} (UTC), адресов: 1",
    "Waits until {until} (UTC) from {count} addresses": "Ждёт до {until} (UTC), адресов: {count}",
    "{name} had no active sessions.": "{name}: активных сеансов не было.",
    "{name} is signed out everywhere (1 session ended).":
        "{name}: выход выполнен на всех устройствах (завершено сеансов: 1).",
    "{name} had no failed sign-ins to forget.": "{name}: неудачных попыток входа не было.",
    "1 API token of {name} is revoked.": "{name}: отозвано API-токенов: 1.",
    "{count} API tokens of {name} are revoked.": "{name}: отозвано API-токенов: {count}.",
    "Failed sign-ins of {name} are forgotten (from 1 address).":
        "{name}: неудачные попытки входа забыты (адресов: 1).",
    "Failed sign-ins of {name} are forgotten (from {count} addresses).":
        "{name}: неудачные попытки входа забыты (адресов: {count}).",
    "Sign-in from {addresses} still waits for every name (too many failed attempts over all names); clear "
    "the address under “Blocked addresses” to let it try again.":
        "Вход с адресов {addresses} по-прежнему ждёт для всех имён (слишком много неудачных попыток со всех "
        "имён); снимите блокировку в разделе «Заблокированные адреса», чтобы с них снова можно было войти.",
    "{addresses} and {count} more": "{addresses} и ещё {count}",
    "Your session had ended (signed out elsewhere or idle too long), so the form you sent was not saved. Sign in "
    "again to send it once more.": "Ваш сеанс завершился (выход выполнен на другом устройстве или долго не было "
    "действий), поэтому отправленная форма не сохранена. Войдите снова, чтобы отправить её ещё раз.",
    "A form sent in another user's session was waiting on the sign-in page; it was not offered to you.":
        "На странице входа ждала форма, отправленная в сеансе другого пользователя; она вам не предложена.",
    "Send the form again?": "Отправить форму ещё раз?",
    "You are signed in again. The form you sent before was not saved; nothing is sent until you press "
    "“Send again”.": "Вы снова вошли. Отправленная раньше форма не сохранена; ничего не будет отправлено, "
    "пока вы не нажмёте «Отправить ещё раз».",
    "Files you had chosen could not be kept: add them again after sending.":
        "Выбранные файлы сохранить не удалось: добавьте их снова после отправки.",
    "What will be sent": "Что будет отправлено",
    "Send again": "Отправить ещё раз",
    "Don't send": "Не отправлять",
    "Blocked addresses": "Заблокированные адреса",
    "Addresses that must wait before any name is tried from them": "Адреса, с которых нельзя входить ни под каким "
                                                                     "именем, пока не истечёт ожидание",
    "No address is blocked.": "Заблокированных адресов нет.",
    "Address": "Адрес",
    "Failed attempts": "Неудачных попыток",
    "Blocked until (UTC)": "Заблокирован до (UTC)",
    "Clear": "Снять",
    "Showing {shown} of {total} blocked addresses, the latest to end first.":
        "Показано {shown} из {total} заблокированных адресов, сначала те, что ждут дольше.",
    "{address} is no longer blocked (1 failed attempt forgotten).":
        "{address}: блокировка снята (забыто неудачных попыток: 1).",
    "{address} is no longer blocked ({count} failed attempts forgotten).":
        "{address}: блокировка снята (забыто неудачных попыток: {count}).",
    "{address} had no failed attempts to forget.": "{address}: неудачных попыток не было.",
    "From {address}, 1 name still waits after its own failed attempts; unlock it above.":
        "С адреса {address} по-прежнему ждут имена после собственных неудачных попыток (имён: 1); "
        "разблокируйте их выше.",
    "From {address}, {count} names still wait after their own failed attempts; unlock them above.":
        "С адреса {address} по-прежнему ждут имена после собственных неудачных попыток (имён: {count}); "
        "разблокируйте их выше.",
    "Keyboard: the arrow keys go between cards and columns, Enter opens a card, M opens its move form, Shift + ← "
    "or → moves it to the previous or next column.": "Клавиатура: стрелки — между карточками и колонками, Enter "
    "открывает карточку, M — её форму переноса, Shift + ← или → переносит её в соседнюю колонку.",
    "Move": "Перенести",
    "characters": "символов",
    "Limit reached: {max} characters. Anything more you type is not added.":
        "Достигнут предел длины ({max}). Дальнейший ввод не добавится.",
    "The text was {length} characters long: only the first {max} were kept.":
        "Текст длиннее предела ({length} при пределе {max}): сохранено только начало.",
    # navigation and lists
    "Cards": "Картотека",
    "Skip to content": "Перейти к содержимому",
    "Language": "Язык",
    "Search": "Поиск",
    "Search…": "Поиск…",
    "Filters": "Фильтры",
    "Apply": "Применить",
    "Reset": "Сбросить",
    "New": "Создать",
    "List": "Список",
    "Kanban": "Канбан",
    "Edit": "Изменить",
    "Save": "Сохранить",
    "Cancel": "Отмена",
    "Delete": "Удалить",
    "Delete this record?": "Удалить запись?",
    "Errors": "Ошибки",
    "breadcrumb": "навигационная цепочка",
    "pagination": "страницы",
    "Next page": "Следующая страница",
    "First page": "Первая страница",
    "{count} records": "Записей: {count}",
    "More than {count} records": "Записей: больше {count}",
    "Count all": "Посчитать все",
    "Nothing found.": "Ничего не найдено.",
    "Any": "Любое",
    "Empty": "Пусто",
    "Not empty": "Заполнено",
    "from": "от",
    "to": "до",
    "Sort by {column}": "Сортировать по «{column}»",
    "Owner": "Ответственный",
    "Created": "Создано",
    "Updated": "Изменено",
    "Saved views": "Сохранённые виды",
    "Save this view": "Сохранить вид",
    "View name": "Название вида",
    "Share with everyone": "Доступен всем",
    "Shared": "Общий",
    "Delete view": "Удалить вид",
    "View saved.": "Вид сохранён.",
    "View deleted.": "Вид удалён.",
    # cards
    "Related": "Связанные записи",
    "History": "История",
    "Version {version}": "Версия {version}",
    "Saved.": "Сохранено.",
    "Created.": "Создано.",
    "Deleted.": "Удалено.",
    "Please correct the highlighted fields.": "Исправьте отмеченные поля.",
    "Required": "Обязательное поле",
    "required": "обязательно",
    "Add": "Добавить",
    "Remove": "Убрать",
    "Choose…": "Выберите…",
    "Yes": "Да",
    "No": "Нет",
    "(calculated)": "(вычисляется)",
    "Type to search…": "Начните вводить…",
    "No matches.": "Нет совпадений.",
    "I agree to the processing of my personal data": "Я согласен на обработку персональных данных",
    "Policy": "Политика",
    "Consent given {when}, policy version {version}.": "Согласие дано {when}, версия политики {version}.",
    "Current file": "Текущий файл",
    "Stage": "Стадия",
    "Move to": "Перенести в",
    "Moved.": "Перенесено.",
    "Not allowed": "Нет доступа",
    "Not found": "Не найдено",
    "Page {number}": "Страница {number}",
    "Records {first}–{last} of {total}": "Записи {first}–{last} из {total}",
    "Total": "Итого",
    "Main": "Основное",
    "Nothing to show here yet.": "Здесь пока ничего нет.",
    "Forbidden": "Доступ запрещён",
    "Open": "Открыть",
    "Error": "Ошибка",
    "You may open this record but not change it.": "Эту запись можно открыть, но не изменить.",
    "This card has no stage or status to arrange a board by.": "У этой карточки нет стадии или статуса для доски.",
    # messages of the record service shown next to fields
    "Required.": "Обязательное поле.",
    "Consent is required.": "Нужно согласие.",
    "Unknown field.": "Неизвестное поле.",
    "You may not change this field.": "Вам нельзя изменять это поле.",
    "Is read-only.": "Поле только для чтения.",
    "Is computed by a formula and cannot be set.": "Вычисляется по формуле, задать нельзя.",
    "Must be true or false.": "Должно быть «да» или «нет».",
    "You may assign records only to yourself.": "Назначать записи можно только на себя.",
    "You may assign records only to yourself or to colleagues of your department.":
        "Назначать записи можно только на себя или коллег своего отдела.",
    "Contains control characters; remove them.": "Содержит управляющие символы; удалите их.",
    "Takes one value only.": "Допустимо только одно значение.",
    "Must be the id of an uploaded file.": "Должен быть загруженный файл.",
    "Form expired": "Форма устарела",
    "Invalid record": "Запись не сохранена",
    "Conflict": "Конфликт",
    "Internal error": "Внутренняя ошибка",
    "Bad request": "Неверный запрос",
}

# Messages of the record service and its field types, with the values they quote as placeholders.
_UPLOADS_FULL = ("Несохранённых загрузок у вас: {count}, это предел для одного сотрудника. Сохраните карточки, "
                 "для которых они загружены; несохранённые загрузки удаляются через сутки.")

RU_PATTERNS: Mapping[str, str] = {
    "'{text}' is not a number.": "«{text}» — не число.",
    "'{text}' is not a whole number.": "«{text}» — не целое число.",
    "'{text}' is not a whole number from {low} to {high}.": "«{text}» — не целое число от {low} до {high}.",
    "'{text}' is not a date; use YYYY-MM-DD or DD.MM.YYYY.": "«{text}» — не дата; пишите ДД.ММ.ГГГГ или ГГГГ-ММ-ДД.",
    "'{text}' is not a valid date: {reason}.": "«{text}» — несуществующая дата ({reason}).",
    "'{text}' is not a phone number.": "«{text}» — не номер телефона.",
    "'{text}' is not a valid phone number for its country.": "«{text}» — неверный номер для своей страны.",
    "'{text}' is not a valid e-mail address.": "«{text}» — неверный адрес электронной почты.",
    "'{text}' is not a valid http(s) address.": "«{text}» — неверный адрес сайта (http или https).",
    "'{text}' is not a valid http(s) address: the port must be from 1 to 65535.":
        "«{text}» — неверный адрес сайта: порт должен быть от 1 до 65535.",
    "'{text}' is not one of the options: {options}.": "«{text}» — нет среди вариантов: {options}.",
    "'{text}' is not a date and time; use ISO 8601, e.g. 2025-03-01T14:30:00+03:00.":
        "«{text}» — не дата и время.",
    "Value {position}: {message}": "Значение {position}: {message}",
    "Must be at least {limit}.": "Не меньше {limit}.",
    "Must be at most {limit}.": "Не больше {limit}.",
    "Must be at least {count} characters.": "Не короче {count} символов.",
    "Must be at most {count} characters (has {has}).": "Не длиннее {count} символов (сейчас {has}).",
    "Must have at least {count} values.": "Нужно не меньше {count} значений.",
    "Must have at most {count} values.": "Допустимо не больше {count} значений.",
    "Contains a NUL character (U+0000), which cannot be stored.": "Содержит нулевой символ (U+0000), его нельзя "
                                                                  "сохранить.",
    "Contains an unpaired surrogate ({code}, not a character), which cannot be stored.":
        "Содержит непарный суррогат ({code}, это не символ), его нельзя сохранить.",
    "The text of '{name}' contains a NUL character (U+0000), which cannot be stored.":
        "Текст «{name}» содержит нулевой символ (U+0000), его нельзя сохранить.",
    "The text of '{name}' contains an unpaired surrogate ({code}, not a character), which cannot be stored.":
        "Текст «{name}» содержит непарный суррогат ({code}, это не символ), его нельзя сохранить.",
    "The search text 'q' is too long: at most {count} characters (has {has}).":
        "Текст поиска слишком длинный: не больше {count} символов (сейчас {has}).",
    "The search text is too long: at most {count} characters (has {has}).":
        "Текст поиска слишком длинный: не больше {count} символов (сейчас {has}).",
    "Must have at most {places} digits after the decimal point.": "Не больше {places} знаков после запятой.",
    "Is too large: at most {digits} significant digits.": "Слишком большое число: не больше {digits} значащих цифр.",
    "Tag '{tag}' is longer than {count} characters.": "Тег «{tag}» длиннее {count} символов.",
    "Must be unique: this value is already used.": "Значение должно быть уникальным: оно уже используется.",
    "Must be unique: another {what} already has this value.": "Значение должно быть уникальным: оно уже есть у "
                                                              "другой записи «{what}».",
    "Must be unique: {what} #{id} '{title}' already has this value.": "Значение должно быть уникальным: оно уже "
                                                                      "есть у записи «{title}» ({what} №{id}).",
    "You have {count} upload that no record holds yet, the most one user may have. Save the cards they were "
    "uploaded for; uploads no record holds are removed a day after upload.": _UPLOADS_FULL,
    "You have {count} uploads that no record holds yet, the most one user may have. Save the cards they were "
    "uploaded for; uploads no record holds are removed a day after upload.": _UPLOADS_FULL,
    "'{name}' is not an accepted file type (accepted: {types}).": "Файл «{name}» не подходит по типу (можно: {types}).",
    "'{name}' is larger than {limit}, the most this field takes.": "Файл «{name}» больше {limit} — это предел для "
                                                                   "этого поля.",
    "The file is larger than {limit}, the most one user's unsaved uploads may take.":
        "Файл больше {limit} — это предел для несохранённых загрузок одного сотрудника.",
    "The file does not fit: uploads that no record holds yet may take {limit} per user, and yours take {used}. "
    "Save the cards they were uploaded for; uploads no record holds are removed a day after upload.":
        "Файл не помещается: несохранённые загрузки одного сотрудника могут занимать {limit}, ваши занимают "
        "{used}. Сохраните карточки, для которых они загружены; несохранённые загрузки удаляются через сутки.",
    "The file does not fit: one user's files may take {limit}, and yours take {used}. Ask an administrator for "
    "more room.": "Файл не помещается: файлы одного сотрудника могут занимать {limit}, ваши занимают {used}. "
                  "Попросите администратора о дополнительном месте.",
    "Must be unique: {what} #{id} already has this value.": "Значение должно быть уникальным: у записи «{what}» "
                                                          "№{id} оно уже есть.",
    "There is no {what} with id {id}.": "Записи «{what}» с номером {id} нет.",
    "There is no active user with id {id}.": "Нет активного пользователя с номером {id}.",
    "Your role may not {verb} {what}.": "Ваша роль не даёт доступа к разделу «{what}».",
    "Nothing is called '{text}'; pick a record from the suggestions (or type its number as #12).":
        "Ничего не называется «{text}»; выберите запись из подсказок (или введите её номер как #12).",
    "Several records are called '{text}'; pick one from the suggestions.":
        "Так называются несколько записей («{text}»); выберите одну из подсказок.",
    "Cannot be computed: {reason}.": "Не удаётся вычислить: {reason}.",
    "Filter '{name}': {message}": "Фильтр «{name}»: {message}",
    "Cannot {purpose} by unknown field '{name}'{hint}": "Нет поля «{name}» для этой операции.",
}

# Messages with a count, keyed by their English plural; Russian has three forms (one, few, many).
RU_PLURALS: Mapping[str, tuple[str, str, str]] = {
    "{count} fields need attention:": ("{count} поле требует внимания:", "{count} поля требуют внимания:",
                                       "{count} полей требуют внимания:"),
    "{count} sessions": ("{count} сеанс", "{count} сеанса", "{count} сеансов"),
    "{count} records": ("{count} запись", "{count} записи", "{count} записей"),
}



def _with_field_types(catalogs: Mapping[str, Mapping[str, str]], attribute: str) -> dict[str, Mapping[str, str]]:
    """The catalogues with the texts each field type carries for itself (FieldType.messages, .message_patterns)."""
    merged = {language: dict(catalog) for language, catalog in catalogs.items()}
    for field_type in FIELD_TYPES.all():
        for language, texts in getattr(field_type, attribute).items():
            merged.setdefault(language, {}).update(texts)
    return dict(merged)


CATALOGS: Mapping[str, Mapping[str, str]] = _with_field_types({"ru": RU}, "messages")
PLURAL_CATALOGS: Mapping[str, Mapping[str, tuple[str, ...]]] = {"ru": RU_PLURALS}
PATTERN_CATALOGS: Mapping[str, Mapping[str, str]] = _with_field_types({"ru": RU_PATTERNS}, "message_patterns")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@lru_cache(maxsize=8)
def _patterns(language: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The language's message patterns as anchored regular expressions, built once."""
    compiled = []
    for english, translated in PATTERN_CATALOGS.get(language, {}).items():
        parts = _PLACEHOLDER.split(english)
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
        compiled.append((re.compile(f"^{regex}$", re.S), translated))
    return tuple(compiled)


def translate(language: str, message: str, **values: Any) -> str:
    """`message` in `language` (English when untranslated), with {placeholders} filled in."""
    catalog = CATALOGS.get(language, {})
    if message in catalog or values:
        text = catalog.get(message, message)
        return text.format(**values) if values else text
    for pattern, translated in _patterns(language):
        match = pattern.match(message)
        if match:
            found = {k: translate(language, v) if k == "message" else v for k, v in match.groupdict().items()}
            return translated.format(**found)
    return message


def _plural_index(language: str, count: int) -> int:
    """Which plural form `count` takes: English one/other; Russian one/few/many (CLDR rules)."""
    if language != "ru":
        return 0 if count == 1 else 1
    if count % 10 == 1 and count % 100 != 11:
        return 0
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return 1
    return 2


def translate_plural(language: str, singular: str, plural: str, count: int, **values: Any) -> str:
    """The form of a counted message `count` asks for in `language`, with {count} and {placeholders} filled in."""
    forms = PLURAL_CATALOGS.get(language, {}).get(plural)
    if forms is not None:
        return forms[_plural_index(language, count)].format(count=count, **values)
    # No plural forms in the catalogue: the English form for the count, translated as a plain message
    # (Russian messages mostly put the count after a colon, "сеансов: 3", which needs no forms).
    return translate(language, singular if count == 1 else plural, count=count, **values)


def pick_language(requested: str | None, accept: Any = None) -> str:
    """A supported language: the requested one, else the best from Accept-Language, else English."""
    if requested in LANGUAGES:
        return requested
    if accept is not None:
        best = accept.best_match(LANGUAGES)
        if best:
            return best
    return DEFAULT_LANGUAGE

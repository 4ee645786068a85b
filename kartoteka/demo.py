"""Demo data: one user per shipped role and a few hundred consistent records of the shipped cards.

Everything is written through the record service (the only writer), as the system actor, with a
plausible demo user as the owner. The data is deterministic for a given seed and `now`, and seeding
is idempotent: a card that already has live records is left alone, so a second run creates nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import phonenumbers
import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM, Principal
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import records
from kartoteka.users import ensure_user

DEMO_PASSWORD = "kartoteka-demo"  # noqa: S105 - printed in the docs, for demo installations only
STAFF_DOMAIN = "kartoteka.example"
# Cards in the order they are seeded: each one only points at cards seeded before it.
DEMO_ENTITIES = ("company", "contact", "deal", "lead", "ticket", "hr_record")
# The demo's records stand for a company's history, entered as an import that skips automation (an employee hired
# years ago gets no onboarding task today); date timers are still set, and a few leads arrive "today" with rules on.
HISTORY = Origin("import", automation=False)
FRESH_LEADS = 10  # in every hundred demo leads


@dataclass(frozen=True)
class DemoUser:
    """A demo login: one per shipped role (two sales representatives)."""

    username: str
    roles: tuple[str, ...]
    department: str
    language: str
    display_name: str


DEMO_USERS = (
    DemoUser("admin", ("admin",), "sales", "ru", "Александр Орлов"),
    DemoUser("sales_manager", ("sales_manager", "sales"), "sales", "ru", "Ольга Кузнецова"),
    DemoUser("sales1", ("sales",), "sales", "ru", "Дмитрий Соколов"),
    DemoUser("sales2", ("sales",), "sales", "en", "Emily Brooks"),
    DemoUser("support1", ("support",), "support", "ru", "Сергей Павлов"),
    DemoUser("hr1", ("hr",), "hr", "ru", "Марина Волкова"),
    DemoUser("finance1", ("finance",), "finance", "en", "Peter Hughes"),
    DemoUser("marketing1", ("marketing",), "marketing", "en", "Laura Bennett"),
)

# The values of one record to create and the id of the demo user who owns it.
Seed = tuple[dict[str, Any], int | None]

# --- word lists -----------------------------------------------------------------------------------

RU_MALE_FIRST = ("Александр", "Дмитрий", "Сергей", "Андрей", "Алексей", "Иван", "Михаил", "Николай",
                 "Павел", "Артём", "Максим", "Владимир", "Евгений", "Игорь", "Олег", "Роман")
RU_FEMALE_FIRST = ("Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Екатерина", "Ирина",
                   "Светлана", "Юлия", "Ксения", "Дарья", "Марина", "Виктория", "Алина", "Полина")
RU_LAST = ("Смирнов", "Иванов", "Кузнецов", "Соколов", "Попов", "Лебедев", "Козлов", "Новиков", "Морозов",
           "Петров", "Волков", "Соловьёв", "Васильев", "Зайцев", "Павлов", "Семёнов", "Голубев",
           "Виноградов", "Богданов", "Воробьёв", "Фёдоров", "Михайлов", "Беляев", "Тарасов", "Белов",
           "Комаров", "Орлов", "Киселёв", "Макаров", "Андреев")
# Patronymics: (male, female).
RU_PATRONYMICS = (("Александрович", "Александровна"), ("Дмитриевич", "Дмитриевна"), ("Сергеевич", "Сергеевна"),
                  ("Андреевич", "Андреевна"), ("Викторович", "Викторовна"), ("Игоревич", "Игоревна"),
                  ("Петрович", "Петровна"), ("Николаевич", "Николаевна"), ("Юрьевич", "Юрьевна"),
                  ("Владимирович", "Владимировна"), ("Михайлович", "Михайловна"), ("Олегович", "Олеговна"))
EN_FIRST = ("John", "Emily", "James", "Olivia", "Michael", "Sarah", "David", "Emma", "Robert", "Sophie",
            "William", "Charlotte", "Thomas", "Grace", "Daniel", "Laura", "George", "Hannah", "Oliver", "Amelia")
EN_LAST = ("Carter", "Smith", "Johnson", "Williams", "Brown", "Taylor", "Wilson", "Davies", "Evans",
           "Roberts", "Walker", "Wright", "Thompson", "Hughes", "Bennett", "Clarke", "Turner", "Mitchell",
           "Harris", "Cooper")

RU_COMPANY_NAMES = ("Ромашка", "Вектор", "Альфа-Строй", "ТехноПарк", "СеверЛес", "Гранит", "Меридиан",
                    "Восток-Логистик", "Стройинвест", "АгроПром", "Фармация Плюс", "Сибирские Сети",
                    "Уральский Металл", "Волга-Трейд", "ИнфоСофт", "Парус", "Спектр", "Атлант", "Орион",
                    "Прогресс", "Зенит-Авто", "Кристалл", "Ладога", "Енисей Энерго", "Бизнес Решения",
                    "Цифровые Технологии", "Медтехника", "Электрон", "Полимер", "Заря", "Русский Хлеб",
                    "Северный Ветер", "Сокол", "Арктика", "Магистраль")
RU_NAME_ROOTS = ("Техно", "Строй", "Агро", "Мед", "Инфо", "Энерго", "Транс", "Эко", "Пром", "Нефте", "Авто",
                 "Электро")
RU_NAME_TAILS = ("Сервис", "Групп", "Трейд", "Ресурс", "Систем", "Логистик", "Инвест", "Комплект", "Снаб",
                 "Маркет")
RU_FORMS = (("ООО", "Общество с ограниченной ответственностью"), ("АО", "Акционерное общество"),
            ("ПАО", "Публичное акционерное общество"))
EN_COMPANY_STEMS = ("Northwind", "Blue Harbor", "Silverline", "Redwood", "Brightstone", "Oakridge",
                    "Greenfield", "Ironbridge", "Westbrook", "Summit", "Pinecrest", "Harbourview", "Kingsley",
                    "Lakeside", "Crescent", "Ashford", "Riverside", "Sterling")
EN_COMPANY_KINDS = ("Trading", "Logistics", "Analytics", "Foods", "Engineering", "Software", "Consulting",
                    "Retail", "Medical", "Energy", "Holdings", "Systems")



@dataclass(frozen=True)
class City:
    """A city with what addresses, phones and registration numbers there look like."""

    name: str
    country: str
    timezone: str
    area_code: str  # for landlines: +7 495…, +44 20…, +1 212…
    streets: tuple[str, ...]
    region: str = ""  # Russian region code: the first digits of INN, KPP, OGRN
    police: str = ""  # who issues passports there ("ГУ МВД России по …")


RU_CITIES = (
    City("Москва", "ru", "Europe/Moscow", "495", ("ул. Тверская", "ул. Профсоюзная", "Ленинградский пр-т",
                                                  "ул. Новый Арбат"), "77", "г. Москве"),
    City("Санкт-Петербург", "ru", "Europe/Moscow", "812", ("Невский пр-т", "Московский пр-т", "ул. Садовая"),
         "78", "г. Санкт-Петербургу и Ленинградской области"),
    City("Казань", "ru", "Europe/Moscow", "843", ("ул. Баумана", "ул. Пушкина", "пр-т Победы"), "16",
         "Республике Татарстан"),
    City("Екатеринбург", "ru", "Asia/Yekaterinburg", "343", ("ул. Малышева", "пр-т Ленина", "ул. 8 Марта"), "66",
         "Свердловской области"),
    City("Новосибирск", "ru", "Asia/Novosibirsk", "383", ("Красный пр-т", "ул. Гоголя", "ул. Кирова"), "54",
         "Новосибирской области"),
    City("Нижний Новгород", "ru", "Europe/Moscow", "831", ("ул. Большая Покровская", "ул. Родионова"), "52",
         "Нижегородской области"),
    City("Самара", "ru", "Europe/Samara", "846", ("ул. Ленинградская", "Московское ш."), "63", "Самарской области"),
    City("Краснодар", "ru", "Europe/Moscow", "861", ("ул. Красная", "ул. Северная"), "23", "Краснодарскому краю"),
    City("Владивосток", "ru", "Asia/Vladivostok", "423", ("Светланская ул.", "Алеутская ул."), "25",
         "Приморскому краю"),
)
GB_CITIES = (
    City("London", "gb", "Europe/London", "20", ("High Street", "King Street", "Baker Street")),
    City("Manchester", "gb", "Europe/London", "161", ("Deansgate", "Oxford Road")),
    City("Bristol", "gb", "Europe/London", "117", ("Park Street", "Queen Square")),
    City("Leeds", "gb", "Europe/London", "113", ("Briggate", "Wellington Street")),
    City("Edinburgh", "gb", "Europe/London", "131", ("George Street", "Princes Street")),
)
US_CITIES = (
    City("New York", "us", "America/New_York", "212", ("Park Ave", "Broadway", "Madison Ave")),
    City("Boston", "us", "America/New_York", "617", ("Boylston St", "Newbury St")),
    City("Chicago", "us", "America/Chicago", "312", ("Michigan Ave", "Wacker Dr")),
    City("Austin", "us", "America/Chicago", "512", ("Congress Ave", "Lamar Blvd")),
    City("San Francisco", "us", "America/Los_Angeles", "415", ("Market St", "Mission St")),
)
CITIES = {"ru": RU_CITIES, "gb": GB_CITIES, "us": US_CITIES}
# (bank, BIK, correspondent account): published requisites of large Russian banks.
RU_BANKS = (
    ("ПАО Сбербанк", "044525225", "30101810400000000225"),
    ("АО «Альфа-Банк»", "044525593", "30101810200000000593"),
    ("Банк ВТБ (ПАО)", "044525187", "30101810700000000187"),
    ("АО «Райффайзенбанк»", "044525700", "30101810200000000700"),
    ("АО «ТБанк»", "044525974", "30101810145250000974"),
)
RU_POSITIONS = ("Генеральный директор", "Коммерческий директор", "Финансовый директор", "Главный бухгалтер",
                "Руководитель отдела закупок", "Менеджер по закупкам", "ИТ-директор", "Системный администратор",
                "Начальник отдела логистики", "Юрисконсульт", "Руководитель отдела продаж")
EN_POSITIONS = ("Chief Executive Officer", "Chief Financial Officer", "Head of Procurement", "IT Director",
                "Operations Manager", "Purchasing Manager", "Office Manager", "Finance Controller",
                "Head of Sales")
PRODUCTS = {"licenses": ("Лицензии CRM", "CRM licenses"), "implementation": ("Внедрение CRM", "CRM rollout"),
            "support": ("Техподдержка", "Support contract"), "training": ("Обучение пользователей", "User training"),
            "integration": ("Интеграция с 1С", "ERP integration")}
UTM_CAMPAIGNS = ("spring_sale_2026", "crm_webinar", "brand_search", "retargeting_q1", "expo_2026", "newsletter_march")
UTM_SOURCES = {"website": ("google", "yandex", "direct"), "advertising": ("yandex", "google", "vk"),
               "social": ("vk", "telegram", "linkedin"), "email_campaign": ("newsletter", "unisender")}
UTM_MEDIUMS = {"website": "organic", "advertising": "cpc", "social": "social", "email_campaign": "email"}

TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                    ("a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
                     "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"), strict=True))


def translit(text: str) -> str:
    """Latin letters for a Russian word, for e-mail addresses and Telegram names."""
    return "".join(TRANSLIT.get(ch, ch) for ch in text.lower())


# --- Russian registration numbers with valid check digits -------------------------------------------

def _weighted(digits: str, weights: Sequence[int], modulus: int = 11) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % modulus % 10


def inn_legal(rng: random.Random, region: str) -> str:
    """A 10-digit organisation INN with a valid check digit."""
    body = region + f"{rng.randint(1, 99):02d}" + f"{rng.randint(0, 99999):05d}"
    return body + str(_weighted(body, (2, 4, 10, 3, 5, 9, 4, 6, 8)))


def inn_person(rng: random.Random, region: str) -> str:
    """A 12-digit personal / sole-proprietor INN with both check digits."""
    body = region + f"{rng.randint(1, 99):02d}" + f"{rng.randint(0, 999999):06d}"
    body += str(_weighted(body, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
    return body + str(_weighted(body, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))


def ogrn(rng: random.Random, region: str, *, sole_proprietor: bool = False) -> str:
    """OGRN (13 digits) or OGRNIP (15 digits) with a valid check digit."""
    year = f"{rng.randint(2, 24):02d}"
    if sole_proprietor:
        body = "3" + year + region + f"{rng.randint(0, 999999999):09d}"
        return body + str(int(body) % 13 % 10)
    body = rng.choice("15") + year + region + f"{rng.randint(0, 9999999):07d}"
    return body + str(int(body) % 11 % 10)


def bank_account(rng: random.Random, bik: str) -> str:
    """A settlement account (40702810…) whose key digit matches the bank's BIK."""
    account = "40702810" + "0" + f"{rng.randint(0, 10**11 - 1):011d}"
    weights = (7, 1, 3) * 8
    total = sum(int(d) * w % 10 for d, w in zip(bik[-3:] + account, weights, strict=False))
    key = total % 10 * 3 % 10
    return account[:8] + str(key) + account[9:]


def snils(rng: random.Random) -> str:
    """An insurance number 'XXX-XXX-XXX YY' with a valid checksum."""
    digits = f"{rng.randint(2_000_000, 999_999_999):09d}"
    total = sum(int(d) * (9 - i) for i, d in enumerate(digits))
    check = total if total < 100 else 0 if total in (100, 101) else total % 101 % 100
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]} {check:02d}"


# --- phones ---------------------------------------------------------------------------------------

def _valid_phone(rng: random.Random, make: Callable[[random.Random], str]) -> str:
    for _ in range(200):
        candidate = make(rng)
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate, None)):
            return candidate
    raise RuntimeError(f"could not generate a valid phone number like {make(rng)}")  # pragma: no cover


def phone(rng: random.Random, country: str, *, city: City | None = None) -> str:
    """A number in E.164 that phonenumbers accepts as valid: a landline of `city`, else a mobile."""
    if city is not None:
        digits = 10 - len(city.area_code)  # national numbers have 10 digits in all three countries
        prefix = {"ru": "+7", "gb": "+44", "us": "+1"}[city.country] + city.area_code
        return _valid_phone(rng, lambda r: f"{prefix}{r.randint(2 * 10 ** (digits - 1), 10 ** digits - 1)}")
    if country == "gb":
        return _valid_phone(rng, lambda r: f"+447{r.randint(400_000_000, 999_999_999)}")
    if country == "us":
        return phone(rng, country, city=rng.choice(US_CITIES))
    codes = ("903", "905", "910", "915", "916", "926", "929", "952", "965", "977", "985", "999")
    return _valid_phone(rng, lambda r: f"+7{r.choice(codes)}{r.randint(0, 9_999_999):07d}")


# --- the generator --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    first: str
    last: str
    middle: str | None
    russian: bool
    female: bool

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.last, self.first, self.middle) if p) if self.russian else self.name

    @property
    def login(self) -> str:
        return f"{translit(self.first)}.{translit(self.last)}" if self.russian else f"{self.first}.{self.last}".lower()


def person(rng: random.Random, russian: bool) -> Person:
    """A random person with a plausible Russian (with patronymic) or English name."""
    female = rng.random() < 0.5
    if not russian:
        return Person(rng.choice(EN_FIRST), rng.choice(EN_LAST), None, False, female)
    first = rng.choice(RU_FEMALE_FIRST if female else RU_MALE_FIRST)
    last = rng.choice(RU_LAST) + ("а" if female else "")
    middle = rng.choice(RU_PATRONYMICS)[1 if female else 0]
    return Person(first, last, middle, True, female)


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _money(rng: random.Random, low: int, high: int, step: int = 1000) -> Decimal:
    return Decimal(rng.randrange(low // step, high // step + 1) * step)


class DemoData:
    """Builds the values of demo records; one instance per seeding run."""

    def __init__(self, now: datetime, users: Mapping[str, Principal], seed: int) -> None:
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.today = self.now.date()
        self.users = users
        self.seed = seed

    def rng(self, entity: str) -> random.Random:
        """A generator of its own per card, so skipping one card does not change the others."""
        return random.Random(f"kartoteka-demo:{self.seed}:{entity}")

    def uid(self, username: str) -> int | None:
        user = self.users.get(username)
        return user.id if user is not None else None

    def sales_owner(self, rng: random.Random) -> int | None:
        return self.uid(rng.choices(("sales1", "sales2", "sales_manager"), weights=(5, 4, 1))[0])

    # --- companies ---

    def companies(self, count: int) -> list[Seed]:
        rng = self.rng("company")
        used_names: set[str] = set()
        used_inns: set[str] = set()
        result = []
        for i in range(count):
            country = rng.choices(("ru", "gb", "us"), weights=(70, 16, 14))[0]
            values = self.company(rng, i, country, used_names, used_inns)
            owner = values.get("account_manager") or self.sales_owner(rng)
            result.append((values, owner))
        return result

    def _unique_name(self, rng: random.Random, used: set[str], make: Callable[[], str]) -> str:
        for _ in range(50):
            name = make()
            if name not in used:
                used.add(name)
                return name
        name = f"{make()} {len(used) + 1}"
        used.add(name)
        return name

    def company(self, rng: random.Random, index: int, country: str, used_names: set[str],
                used_inns: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "company_type": _pick(rng, {"client": 45, "prospect": 30, "partner": 10, "supplier": 10, "competitor": 5}),
            "industry": rng.choice(("it", "manufacturing", "retail", "wholesale", "finance", "logistics",
                                    "construction", "healthcare", "education", "energy", "agriculture", "other")),
            "employees": rng.choice((8, 15, 35, 60, 120, 250, 480, 900, 1500, 4200)) + rng.randint(0, 9),
            "country": country,
            "account_manager": self.sales_owner(rng) if rng.random() < 0.9 else None,
        }
        values["annual_revenue"] = _money(rng, 3_000_000, 40_000_000, 100_000) * max(1, values["employees"] // 40)
        if country == "ru":
            sole = rng.random() < 0.1
            city = rng.choice(RU_CITIES)
            region = city.region
            if sole:
                owner = person(rng, russian=True)
                name = self._unique_name(rng, used_names, lambda o=owner: f"ИП {o.last} {o.first[0]}. {o.middle[0]}.")
                values["legal_name"] = f"Индивидуальный предприниматель {owner.full_name}"
                values["ceo_name"] = owner.full_name
                slug = translit(owner.last)
            else:
                short, full = RU_FORMS[0] if rng.random() < 0.75 else rng.choice(RU_FORMS[1:])

                def make(short: str = short) -> str:
                    base = rng.choice(RU_COMPANY_NAMES) if rng.random() < 0.5 else \
                        rng.choice(RU_NAME_ROOTS) + rng.choice(RU_NAME_TAILS).lower()
                    return f"{short} «{base}»"

                name = self._unique_name(rng, used_names, make)
                base = name.split("«", 1)[1].rstrip("»")
                values["legal_name"] = f"{full} «{base}»"
                values["ceo_name"] = person(rng, russian=True).full_name
                slug = translit(base).replace(" ", "-")
            inn = ""
            while not inn or inn in used_inns:
                inn = inn_person(rng, region) if sole else inn_legal(rng, region)
            used_inns.add(inn)
            bank, bik, corr = rng.choice(RU_BANKS)
            address = (f"{rng.randint(101000, 690000)}, г. {city.name}, {rng.choice(city.streets)}, "
                       f"д. {rng.randint(1, 120)}" + ("" if sole else f", офис {rng.randint(1, 450)}"))
            values.update(
                name=name, city=city.name, inn=inn, ogrn=ogrn(rng, region, sole_proprietor=sole),
                legal_address=address, postal_address=address if rng.random() < 0.7 else None,
                bank_name=bank, bik=bik, bank_account=bank_account(rng, bik), corr_account=corr,
                website=f"https://{slug}.ru" if not sole and rng.random() < 0.85 else None,
                phones=[phone(rng, "ru", city=city)] + ([phone(rng, "ru")] if rng.random() < 0.4 else []),
                emails=[f"info@{slug}.ru"] if not sole else [f"{slug}.ip@mail.ru"],
            )
            if not sole:
                values["kpp"] = f"{region}{rng.randint(1, 50):02d}01001"
        else:
            form = "Ltd" if country == "gb" else rng.choice(("LLC", "Inc."))
            name = self._unique_name(rng, used_names,
                                     lambda: f"{rng.choice(EN_COMPANY_STEMS)} {rng.choice(EN_COMPANY_KINDS)} {form}")
            domain = name.rsplit(" ", 1)[0].lower().replace(" ", "") + (".co.uk" if country == "gb" else ".com")
            city = rng.choice(CITIES[country])
            values.update(
                name=name, legal_name=name.replace("Ltd", "Limited") if country == "gb" else name, city=city.name,
                website=f"https://www.{domain}", emails=[f"hello@{domain}"],
                phones=[phone(rng, country, city=city)],
                legal_address=f"{rng.randint(1, 220)} {rng.choice(city.streets)}, {city.name}",
                ceo_name=person(rng, russian=False).name,
            )
        if values["company_type"] == "client":
            values["credit_limit"] = _money(rng, 500_000, 10_000_000, 100_000)
            values["payment_delay_days"] = rng.choice((0, 14, 30, 45, 60))
        if rng.random() < 0.4:
            values["tags"] = rng.sample(["VIP", "key account", "ключевой клиент", "tender", "holding", "export"],
                                        rng.randint(1, 2))
        if rng.random() < 0.3:
            values["notes"] = rng.choice(("Работаем по рамочному договору.", "Закупки только через тендер.",
                                          "Prefers quarterly invoicing.", "Decision takes 2-3 months."))
        return values

    # --- contacts ---

    def contacts(self, count: int, companies: Mapping[int, Mapping[str, Any]]) -> list[Seed]:
        rng = self.rng("contact")
        company_ids = sorted(companies)
        result = []
        for i in range(count):
            # Every company gets a contact first, then the rest are spread over them.
            company_id = company_ids[i] if i < len(company_ids) else rng.choice(company_ids)
            company = companies[company_id]
            result.append(self.contact(rng, company_id, company))
        return result

    def contact(self, rng: random.Random, company_id: int, company: Mapping[str, Any]) -> Seed:
        country = company.get("country") or "ru"
        russian = country == "ru"
        who = person(rng, russian)
        domain = (company.get("emails") or ["info@example.com"])[0].split("@", 1)[1]
        personal = rng.choice(("mail.ru", "yandex.ru", "gmail.com") if russian else ("gmail.com", "outlook.com"))
        emails = [f"{who.login}@{domain}"]
        if rng.random() < 0.3:
            emails.append(f"{who.login}{rng.randint(1, 99)}@{personal}")
        source = _pick(rng, {"website": 25, "referral": 15, "cold_call": 15, "exhibition": 10, "social": 10,
                             "advertising": 10, "email_campaign": 10, "partner": 5})
        segment = _pick(rng, {"active": 35, "potential": 35, "sleeping": 15, "partner": 10, "blacklist": 5})
        consent = rng.random() < 0.8
        city = next((c for c in CITIES.get(country, ()) if c.name == company.get("city")), None)
        phones = [phone(rng, country)]
        if city is not None and rng.random() < 0.35:
            phones.append(phone(rng, country, city=city))
        values: dict[str, Any] = {
            "last_name": who.last, "first_name": who.first, "middle_name": who.middle, "company": company_id,
            "position": rng.choice(RU_POSITIONS if russian else EN_POSITIONS),
            "decision_role": rng.choice(("decision_maker", "influencer", "user", "gatekeeper")),
            "phones": phones,
            "emails": emails,
            "preferred_channel": rng.choice(("phone", "email", "telegram", "meeting") if russian
                                            else ("phone", "email", "whatsapp", "meeting")),
            "city": company.get("city"), "timezone": city.timezone if city else None, "segment": segment,
            "funnel_stage": _pick(rng, {"subscriber": 5, "lead": 20, "mql": 15, "sql": 15, "opportunity": 15,
                                        "customer": 25, "advocate": 5}),
            "account_manager": company.get("account_manager") or self.sales_owner(rng),
            "source": source,
            "last_contacted_at": self.now - timedelta(days=rng.randint(0, 120), hours=rng.randint(0, 8)),
            "next_contact_date": self.today + timedelta(days=rng.randint(1, 45)) if segment != "blacklist" else None,
            "pd_consent": True if consent else None,
            "marketing_opt_in": consent and rng.random() < 0.6,
        }
        if segment == "blacklist":
            values["blacklist_reason"] = rng.choice(("Неоднократно не оплачивал счета.", "Просил больше не звонить.",
                                                     "Asked to be removed from all lists."))
        if russian and rng.random() < 0.4:
            values["telegram"] = f"@{translit(who.first)}_{translit(who.last)}"[:33]
        if rng.random() < 0.5:
            values["birthday"] = date(rng.randint(1962, 2000), rng.randint(1, 12), rng.randint(1, 28))
        if source in UTM_SOURCES:
            values.update(utm_source=rng.choice(UTM_SOURCES[source]), utm_medium=UTM_MEDIUMS[source],
                          utm_campaign=rng.choice(UTM_CAMPAIGNS))
            if source == "advertising":
                values.update(utm_term=rng.choice(("crm система", "crm for b2b", "учёт клиентов")),
                              utm_content=rng.choice(("banner_a", "banner_b", "text_ad_1")))
        if rng.random() < 0.45:
            values["nps"] = rng.choices(range(11), weights=(1, 1, 1, 1, 2, 2, 3, 5, 8, 9, 7))[0]
        if rng.random() < 0.35:
            values["tags"] = rng.sample(["VIP", "ЛПР", "decision maker", "newsletter", "конференция 2026", "webinar"],
                                        rng.randint(1, 2))
        return values, values["account_manager"]

    # --- deals ---

    STAGE_PROBABILITY = {"new": 10, "qualification": 20, "proposal": 40, "negotiation": 60, "contract": 80,
                         "won": 100, "lost": 0}

    def deals(self, count: int, companies: Mapping[int, Mapping[str, Any]],
              contacts: Mapping[int, Mapping[str, Any]]) -> list[Seed]:
        rng = self.rng("deal")
        by_company: dict[int, list[int]] = {}
        for contact_id, data in sorted(contacts.items()):
            if data.get("company") in companies:
                by_company.setdefault(data["company"], []).append(contact_id)
        candidates = sorted(c for c in by_company if companies[c].get("company_type") not in ("competitor", "supplier"))
        candidates = candidates or sorted(by_company)
        result = []
        for _ in range(count):
            company_id = rng.choice(candidates)
            result.append(self.deal(rng, company_id, companies[company_id], rng.choice(by_company[company_id])))
        return result

    def deal(self, rng: random.Random, company_id: int, company: Mapping[str, Any],
             contact_id: int) -> Seed:
        russian = (company.get("country") or "ru") == "ru"
        stage = _pick(rng, {"new": 14, "qualification": 14, "proposal": 15, "negotiation": 12, "contract": 8,
                            "won": 22, "lost": 15})
        products = rng.sample(sorted(PRODUCTS), rng.randint(1, 3))
        headline = PRODUCTS[products[0]][0 if russian else 1]
        amount = _money(rng, 150_000, 12_000_000, 10_000)
        cost = (amount * Decimal(rng.randint(35, 85)) / 100).quantize(Decimal("1"))
        values: dict[str, Any] = {
            "name": f"{headline} — {company['name']}",
            "company": company_id, "contact": contact_id,
            "deal_type": _pick(rng, {"new_business": 60, "upsell": 25, "renewal": 15}),
            "products": products, "stage": stage, "amount": amount,
            "probability": self.STAGE_PROBABILITY[stage],
            "responsible": company.get("account_manager") or self.sales_owner(rng),
            "source": rng.choice(("lead", "existing_client", "referral", "tender", "partner", "outbound")),
            "cost": cost, "margin": ((amount - cost) / amount * 100).quantize(Decimal("0.01")),
            "payment_terms": rng.choice(("prepayment", "split_50_50", "net_30", "net_60")),
        }
        if stage in ("won", "lost"):
            closed = self.today - timedelta(days=rng.randint(1, 240))
            values["close_date"] = closed
            if stage == "won":
                values["won_date"] = closed
                values["invoice_number"] = f"INV-{closed.year}-{rng.randint(1, 9999):04d}"
            else:
                reason = _pick(rng, {"price": 30, "competitor": 25, "no_budget": 20, "no_decision": 10,
                                     "timing": 10, "other": 5})
                values["lost_reason"] = reason
                if reason == "competitor":
                    values["competitor"] = rng.choice(("Битрикс24", "amoCRM", "Salesforce", "HubSpot", "RetailCRM"))
                if reason in ("other", "competitor") or rng.random() < 0.3:
                    values["lost_comment"] = rng.choice(
                        ("Клиент заморозил проект до следующего года.", "Выбрали решение дешевле.") if russian
                        else ("The budget went to another project.", "They went with a cheaper tool."))
        else:
            values["close_date"] = self.today + timedelta(days=rng.randint(3, 150))
            values["next_step"] = rng.choice(("Отправить КП", "Провести демо", "Согласовать договор") if russian
                                             else ("Send the proposal", "Book a demo", "Call the CFO"))
            values["next_step_date"] = self.today + timedelta(days=rng.randint(1, 14))
            if stage == "contract":
                values["invoice_number"] = f"INV-{self.today.year}-{rng.randint(1, 9999):04d}"
        if rng.random() < 0.4:
            values["description"] = rng.choice((
                "Клиенту нужна CRM для отдела продаж на 25 пользователей с интеграцией с 1С.",
                "Расширение лицензий и обучение новых сотрудников.") if russian else (
                "Rollout for the sales office, 40 seats, SSO required.",
                "Renewal of the annual support contract."))
        if rng.random() < 0.25:
            values["tags"] = rng.sample(["тендер", "срочно", "стратегическая", "pilot", "urgent"], 1)
        return values, values["responsible"]

    # --- leads ---

    def leads(self, count: int, companies: Mapping[int, Mapping[str, Any]], contacts: Mapping[int, Mapping[str, Any]],
              deals: Mapping[int, Mapping[str, Any]]) -> list[Seed]:
        rng = self.rng("lead")
        deals_by_company: dict[int, list[int]] = {}
        for deal_id, data in sorted(deals.items()):
            deals_by_company.setdefault(data.get("company"), []).append(deal_id)
        contact_ids = sorted(contacts)
        result = []
        for _ in range(count):
            status = _pick(rng, {"new": 25, "in_progress": 25, "qualified": 15, "unqualified": 15, "converted": 20})
            if status == "converted" and contact_ids:
                contact_id = rng.choice(contact_ids)
                result.append(self.converted_lead(rng, contact_id, contacts[contact_id], companies, deals_by_company))
            else:
                result.append(self.open_lead(rng, "new" if status == "converted" else status))
        return result

    def _lead_common(self, rng: random.Random, russian: bool) -> dict[str, Any]:
        source = _pick(rng, {"website": 30, "call": 15, "email": 10, "chat": 10, "exhibition": 8, "referral": 8,
                             "advertising": 12, "social": 7})
        values: dict[str, Any] = {
            "source": source,
            "request": rng.choice(("Хотим посмотреть демо CRM для отдела продаж.",
                                   "Нужна интеграция с 1С и телефонией.", "Сколько стоит лицензия на 10 человек?",
                                   "Ищем замену текущей CRM, нужна миграция данных.") if russian else
                                  ("We'd like a demo for our sales team.", "Do you integrate with Xero?",
                                   "Pricing for 15 seats, please.", "Looking to replace spreadsheets with a CRM.")),
            "product_interest": rng.sample(sorted(PRODUCTS), rng.randint(1, 2)),
            "rating": _pick(rng, {"hot": 20, "warm": 45, "cold": 35}),
            "responsible": self.uid(rng.choice(("sales1", "sales2", "sales_manager"))),
            "pd_consent": True if source in ("website", "chat", "advertising") or rng.random() < 0.5 else None,
        }
        if rng.random() < 0.75:
            values["budget"] = _money(rng, 50_000, 5_000_000, 10_000)
        if source in ("website", "advertising", "social"):
            values.update(utm_source=rng.choice(UTM_SOURCES[source]), utm_medium=UTM_MEDIUMS[source],
                          utm_campaign=rng.choice(UTM_CAMPAIGNS),
                          referrer=rng.choice(("https://yandex.ru/search/", "https://www.google.com/",
                                               "https://vk.com/kartoteka_crm")))
            if source == "advertising":
                values.update(utm_term=rng.choice(("crm система", "crm для малого бизнеса", "crm software")),
                              utm_content=rng.choice(("banner_a", "banner_b", "text_ad_2")))
        if rng.random() < 0.2:
            values["tags"] = rng.sample(["тендер", "повторное обращение", "webinar", "конференция 2026"], 1)
        return values

    def open_lead(self, rng: random.Random, status: str) -> Seed:
        country = rng.choices(("ru", "gb", "us"), weights=(75, 15, 10))[0]
        russian = country == "ru"
        who = person(rng, russian)
        values = self._lead_common(rng, russian)
        if russian:
            company = f"ООО «{rng.choice(RU_NAME_ROOTS)}{rng.choice(RU_NAME_TAILS).lower()}»"
            domain = translit(company.split("«")[1].rstrip("»")) + ".ru"
            city = rng.choice(RU_CITIES).name
        else:
            form = "Ltd" if country == "gb" else "LLC"
            company = f"{rng.choice(EN_COMPANY_STEMS)} {rng.choice(EN_COMPANY_KINDS)} {form}"
            domain = company.rsplit(" ", 1)[0].lower().replace(" ", "") + (".co.uk" if country == "gb" else ".com")
            city = rng.choice(CITIES[country]).name
        has_company = rng.random() < 0.8
        values.update(
            contact_name=who.name, company_name=company if has_company else None,
            position=rng.choice(RU_POSITIONS if russian else EN_POSITIONS) if has_company else None,
            phones=[phone(rng, country)] if rng.random() < 0.85 else [],
            emails=[f"{who.login}@{domain if has_company else 'gmail.com'}"],
            website=f"https://{domain}" if has_company and rng.random() < 0.5 else None,
            city=city, status=status,
        )
        if status == "unqualified":
            values["unqualified_reason"] = rng.choice(("no_budget", "no_need", "not_reachable", "competitor", "spam"))
        else:
            values["next_contact_date"] = self.today + timedelta(days=rng.randint(0, 21))
        owner = values["responsible"] if rng.random() < 0.8 else self.uid("marketing1")
        return values, owner

    def converted_lead(self, rng: random.Random, contact_id: int, contact: Mapping[str, Any],
                       companies: Mapping[int, Mapping[str, Any]],
                       deals_by_company: Mapping[Any, list[int]]) -> Seed:
        company_id = contact.get("company")
        company = companies.get(company_id, {})
        russian = (company.get("country") or "ru") == "ru"
        values = self._lead_common(rng, russian)
        converted_at = self.today - timedelta(days=rng.randint(1, 200))
        values.update(
            contact_name=f"{contact['first_name']} {contact['last_name']}", company_name=company.get("name"),
            position=contact.get("position"), phones=contact.get("phones") or [], emails=contact.get("emails") or [],
            city=contact.get("city"), status="converted", converted=True, converted_at=converted_at,
            converted_contact=contact_id, converted_company=company_id if company_id in companies else None,
        )
        if not values["phones"] and not values["emails"]:
            values["phones"] = [phone(rng, company.get("country") or "ru")]
        company_deals = deals_by_company.get(company_id) or []
        if company_deals and rng.random() < 0.7:
            values["converted_deal"] = rng.choice(company_deals)
        return values, values["responsible"]

    # --- tickets ---

    TICKET_TOPICS = (
        ("question", "Не приходят уведомления на почту", "После обновления перестали приходить письма о новых задачах.",
         "Cannot log in after password reset", "The reset link says it has expired."),
        ("bug", "Ошибка при выгрузке отчёта в Excel", "Отчёт по сделкам за квартал выгружается пустым.",
         "Export to CSV breaks Cyrillic names", "Names come out as question marks in the CSV file."),
        ("incident", "Не открывается карточка клиента", "Карточка компании открывается с ошибкой 500.",
         "The app is very slow this morning", "Lists take 20 seconds to load for the whole team."),
        ("billing", "Нужен акт сверки за прошлый квартал", "Пришлите, пожалуйста, акт сверки и закрывающие документы.",
         "Invoice has the wrong VAT number", "Please reissue invoice with our correct VAT number."),
        ("feature_request", "Интеграция с телефонией", "Хотим видеть записи звонков в карточке контакта.",
         "Add a Kanban view for deals", "Our sales team would like to drag deals between stages."),
        ("complaint", "Долго не отвечали на заявку", "Ждём ответа по обращению уже три дня.",
         "Nobody called us back", "We requested a call two days ago and heard nothing."),
    )

    def tickets(self, count: int, companies: Mapping[int, Mapping[str, Any]], contacts: Mapping[int, Mapping[str, Any]],
                deals: Mapping[int, Mapping[str, Any]]) -> list[Seed]:
        rng = self.rng("ticket")
        deals_by_company: dict[Any, list[int]] = {}
        for deal_id, data in sorted(deals.items()):
            deals_by_company.setdefault(data.get("company"), []).append(deal_id)
        contact_ids = sorted(contacts)
        result = []
        for _ in range(count):
            contact_id = rng.choice(contact_ids)
            contact = contacts[contact_id]
            company_id = contact.get("company") if contact.get("company") in companies else None
            company = companies.get(company_id, {}) if company_id else {}
            russian = (company.get("country") or "ru") == "ru"
            category, ru_subject, ru_text, en_subject, en_text = rng.choice(self.TICKET_TOPICS)
            status = _pick(rng, {"new": 15, "open": 15, "in_progress": 20, "waiting": 10, "resolved": 20, "closed": 20})
            values: dict[str, Any] = {
                "subject": ru_subject if russian else en_subject,
                "description": ru_text if russian else en_text,
                "contact": contact_id, "company": company_id,
                "reporter_email": (contact.get("emails") or [None])[0],
                "channel": _pick(rng, {"email": 40, "phone": 25, "chat": 15, "portal": 10, "telegram": 10}),
                "category": category,
                "priority": _pick(rng, {"low": 20, "normal": 50, "high": 20, "urgent": 10}),
                "status": status,
                "assignee": self.uid("support1") if status != "new" else None,
                "time_spent": Decimal(rng.randint(0, 24)) / 4 if status != "new" else None,
            }
            if status in ("resolved", "closed"):
                values["resolution"] = rng.choice(
                    ("Проблема решена, настройки исправлены.", "Документы отправлены клиенту.",
                     "Исправлено в версии 2.4, клиент подтвердил.") if russian else
                    ("Fixed in release 2.4; the customer confirmed.", "Explained the setting; no defect found.",
                     "Documents sent to the customer."))
                values["resolved_at"] = self.now - timedelta(hours=rng.randint(1, 24 * 30))
                if rng.random() < 0.7:
                    values["satisfaction"] = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 3, 6, 9))[0]
            if rng.random() < 0.3:
                values["internal_note"] = rng.choice(("Клиент на тарифе Pro, SLA 8 часов.",
                                                      "Escalated to engineering, see JIRA KT-1432."))
            company_deals = deals_by_company.get(company_id) or []
            if company_deals and rng.random() < 0.3:
                values["related_deal"] = rng.choice(company_deals)
            if rng.random() < 0.3:
                values["tags"] = rng.sample(["1С", "интеграция", "API", "billing", "доступ", "отчёты"], 1)
            owner = values["assignee"] or self.uid("support1")
            result.append((values, owner))
        return result

    # --- employee records ---

    # Positions by department: (Russian titles, English titles for the London office).
    HR_POSITIONS = {
        "sales": (("Менеджер по продажам", "Старший менеджер по продажам"), ("Account Executive", "Sales Manager")),
        "support": (("Специалист технической поддержки", "Инженер второй линии"), ("Support Engineer",)),
        "hr": (("Специалист по кадрам", "HR бизнес-партнёр"), ("HR Business Partner",)),
        "finance": (("Бухгалтер", "Финансовый аналитик"), ("Financial Controller", "Accountant")),
        "marketing": (("Маркетолог", "Интернет-маркетолог"), ("Marketing Manager", "Content Manager")),
        "it": (("Разработчик Python", "Системный администратор", "Тестировщик"), ("Software Engineer",)),
        "operations": (("Офис-менеджер", "Специалист по закупкам"), ("Office Manager",)),
        "management": (("Директор по развитию", "Технический директор"), ("Operations Director",)),
    }
    OFFICE_CITIES = {"moscow": RU_CITIES[0], "spb": RU_CITIES[1], "kazan": RU_CITIES[2], "london": GB_CITIES[0]}
    DEPARTMENT_MANAGER = {"sales": "sales_manager", "support": "support1", "hr": "hr1", "finance": "finance1",
                          "marketing": "marketing1"}

    def hr_records(self, count: int) -> list[Seed]:
        rng = self.rng("hr_record")
        used_emails: set[str] = set()
        result = []
        demo_staff = [u for u in DEMO_USERS if u.username in self.users]
        for i in range(count):
            demo = demo_staff[i] if i < len(demo_staff) else None
            if demo is not None:
                first, last = demo.display_name.split(" ", 1)
                russian = demo.language == "ru"
                female = first.endswith(("а", "я")) or first in ("Emily", "Laura")
                middle = rng.choice(RU_PATRONYMICS)[1 if female else 0] if russian else None
                who = Person(first, last, middle, russian, female)
                department = demo.department if demo.username != "admin" else "management"
            else:
                department = _pick(rng, {"sales": 25, "support": 15, "hr": 5, "finance": 10, "marketing": 10,
                                         "it": 20, "operations": 10, "management": 5})
                russian = rng.random() < 0.85
                who = person(rng, russian)
            result.append(self.hr_record(rng, i, who, department, demo, used_emails))
        return result

    def hr_record(self, rng: random.Random, index: int, who: Person, department: str, demo: DemoUser | None,
                  used_emails: set[str]) -> Seed:
        status = "active" if demo is not None else _pick(rng, {"onboarding": 8, "active": 70, "on_leave": 8,
                                                               "dismissed": 14})
        hire_date = self.today - timedelta(days=rng.randint(5, 45) if status == "onboarding" else rng.randint(60, 3000))
        email = f"{who.login}@{STAFF_DOMAIN}"
        while email in used_emails:
            email = f"{who.login}{rng.randint(2, 99)}@{STAFF_DOMAIN}"
        used_emails.add(email)
        manager = self.uid(self.DEPARTMENT_MANAGER.get(department, "admin"))
        if demo is not None and demo.username == self.DEPARTMENT_MANAGER.get(department):
            manager = self.uid("admin")
        titles = self.HR_POSITIONS[department][0 if who.russian else 1]
        position = (rng.choice(titles) if demo is None else
                    {"admin": "Директор по информационным технологиям", "sales_manager": "Руководитель отдела продаж"}
                    .get(demo.username, titles[0]))
        office = rng.choice(("moscow", "moscow", "spb", "kazan", "remote")) if who.russian else "london"
        office_city = self.OFFICE_CITIES.get(office)
        salary = (_money(rng, 70_000, 320_000, 5_000) if department != "management"
                  else _money(rng, 350_000, 600_000, 10_000))
        values: dict[str, Any] = {
            "employee_name": who.full_name, "employee_number": f"KT-{index + 1:04d}", "position": position,
            "department": department, "manager": manager,
            "user_account": self.uid(demo.username) if demo is not None else None,
            "work_phone": phone(rng, "ru" if who.russian else "gb", city=office_city),
            "work_email": email, "office": office,
            "employment_type": _pick(rng, {"full_time": 85, "part_time": 6, "contractor": 5, "intern": 4}),
            "status": status, "hire_date": hire_date,
            "probation_months": 0 if demo is not None and rng.random() < 0.5 else rng.choice((3, 3, 3, 6)),
            "salary": salary, "bonus_percent": Decimal(rng.choice((0, 10, 15, 20, 30))),
            "birth_date": hire_date - timedelta(days=rng.randint(21 * 365, 50 * 365)),
            "personal_phone": phone(rng, "ru" if who.russian else "gb"),
            "pd_consent": True,
        }
        if status == "dismissed":
            values["dismissal_date"] = hire_date + timedelta(days=rng.randint(30, (self.today - hire_date).days))
            values["dismissal_reason"] = rng.choice(("По собственному желанию (п. 3 ч. 1 ст. 77 ТК РФ).",
                                                     "По соглашению сторон (п. 1 ч. 1 ст. 77 ТК РФ).",
                                                     "Истечение срока трудового договора."))
        if who.russian:
            birth = values["birth_date"]
            city = rng.choice(RU_CITIES)
            region = city.region
            values.update(
                passport_series=f"{region}{rng.randint(0, 99):02d}", passport_number=f"{rng.randint(100000, 999999)}",
                passport_issued_by=f"ГУ МВД России по {city.police}",
                passport_issue_date=min(birth + timedelta(days=rng.choice((20, 45)) * 365 + rng.randint(10, 200)),
                                        self.today - timedelta(days=30)),
                snils=snils(rng), personal_inn=inn_person(rng, region),
                home_address=(f"г. {city.name}, {rng.choice(city.streets)}, д. {rng.randint(1, 150)}, "
                              f"кв. {rng.randint(1, 300)}"),
                emergency_contact=f"{person(rng, True).name} (родственник), {phone(rng, 'ru')}",
            )
        else:
            street = rng.choice(("Baker Street", "Elm Road", "Mill Lane"))
            values["home_address"] = f"{rng.randint(1, 200)} {street}, London"
            values["emergency_contact"] = f"{person(rng, False).name} (spouse), {phone(rng, 'gb')}"
        return values, self.uid("hr1")


# --- seeding --------------------------------------------------------------------------------------

def demo_users(service: RecordService, engine: sa.Engine, now: datetime) -> dict[str, Principal]:
    """The demo users, created when missing; roles the config does not define are left out."""
    known = set(service.metadata.roles) or None
    result = {}
    for user in DEMO_USERS:
        roles = [r for r in user.roles if known is None or r in known]
        if not roles:
            continue
        first, last = user.display_name.split(" ", 1)
        login = f"{translit(first)}.{translit(last)}" if user.language == "ru" else f"{first}.{last}".lower()
        result[user.username] = ensure_user(
            engine, user.username, roles, now, password=DEMO_PASSWORD, display_name=user.display_name,
            department=user.department, language=user.language, email=f"{login}@{STAFF_DOMAIN}",
            known_roles=known,
        )
    return result


def live_records(engine: sa.Engine, entity: str) -> dict[int, dict[str, Any]]:
    """Stored data of the live records of one card, by id (read-only; writes go through the service)."""
    query = (sa.select(records.c.id, records.c.data)
             .where(records.c.entity == entity, records.c.deleted_at.is_(None)).order_by(records.c.id))
    with engine.connect() as conn:
        return {row.id: dict(row.data) for row in conn.execute(query)}


def seed_demo(service: RecordService, engine: sa.Engine, now: datetime, *, per_entity: int = 60,
              seed: int = 7) -> dict[str, int]:
    """Create demo users and `per_entity` records of each shipped card; returns live records per card.

    A card that already has live records is skipped, so running this twice creates nothing new.
    """
    users = demo_users(service, engine, now)
    data = DemoData(now, users, seed)
    shipped = [name for name in DEMO_ENTITIES if name in service.metadata.entities]
    stored = {name: live_records(engine, name) for name in shipped}
    fresh = per_entity * FRESH_LEADS // 100
    builders: dict[str, Callable[[], list[Seed]]] = {
        "company": lambda: data.companies(per_entity),
        "contact": lambda: data.contacts(per_entity, stored["company"]),
        "deal": lambda: data.deals(per_entity, stored["company"], stored["contact"]),
        "lead": lambda: data.leads(per_entity - fresh, stored["company"], stored["contact"], stored["deal"]),
        "ticket": lambda: data.tickets(per_entity, stored["company"], stored["contact"], stored["deal"]),
        "hr_record": lambda: data.hr_records(per_entity),
    }
    needs = {"contact": ("company",), "deal": ("company", "contact"), "lead": ("company", "contact", "deal"),
             "ticket": ("company", "contact", "deal")}
    for name in shipped:
        if stored[name] or per_entity <= 0:
            continue
        if any(not stored.get(dep) for dep in needs.get(name, ())):
            continue  # nothing to point at (the card it refers to is missing from the config)
        entity = service.metadata.entities[name]
        for values, owner in builders[name]():
            _seed_one(service, entity, values, owner, HISTORY)
        stored[name] = live_records(engine, name)
        if name == "lead" and stored[name]:
            # Leads that come in today, with automation on: the shipped rules give their owners follow-up tasks.
            rng = data.rng("fresh-lead")
            for _ in range(fresh):
                _seed_one(service, entity, *data.open_lead(rng, "new"), Origin("ui"))
            stored[name] = live_records(engine, name)
    return {name: len(stored[name]) for name in shipped}


def _seed_one(service: RecordService, entity: EntityDef, values: Mapping[str, Any], owner: int | None,
              origin: Origin) -> None:
    clean = {k: v for k, v in values.items() if k in entity.fields and v is not None and v != []}
    try:
        service.create(entity.name, clean, SYSTEM, owner=owner, origin=origin)
    except Exception as exc:
        exc.add_note(f"while seeding a demo {entity.name}: {clean!r}")
        raise

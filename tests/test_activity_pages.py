"""What a user of the timeline, My tasks and the notifications sees (issue 9's review): header counts that follow an
htmx tick, notifications read by opening their card, task descriptions, assignees who may open the card, rule actions
in words, and moments in the instance's time zone."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kartoteka import create_app
from kartoteka.activity.model import TaskQuery
from kartoteka.activity.store import add_entry, create_task, notify
from kartoteka.activity.tasks import card_readers, get_task, list_tasks, new_task, update_task
from kartoteka.config import Settings
from kartoteka.errors import RecordValidationError
from kartoteka.records.model import SYSTEM
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import notifications, rule_runs
from tests.test_web import CSRF, sign_in, text_of

HTMX = {"HX-Request": "true"}
COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def rep(make_user):
    return make_user("rep", ["sales"], "sales")[0]


@pytest.fixture
def deal(service):
    def make(owner, name="CRM rollout"):
        company = service.create("company", COMPANY | {"name": f"{name} Ltd"}, SYSTEM)
        return service.create("deal", {"name": name, "company": company.id}, SYSTEM, owner=owner.id)
    return make


def header(html: str) -> tuple[int, int]:
    """(open tasks, unread notifications) as the header shows them."""
    tasks = re.search(r'class="header-tasks[^"]*"[^>]*>.*?My tasks</span> <span class="count">(\d+)</span>', html)
    bell = re.search(r'Notifications</span> <span class="count">(\d+)</span>', html)
    assert tasks and bell, html[:3000]
    return int(tasks.group(1)), int(bell.group(1))


# 1. The header follows an htmx tick ------------------------------------------------------------------------------

def test_ticking_a_task_with_htmx_swaps_the_header_counts_out_of_band(client, rep, deal, service):
    card = deal(rep)
    first = new_task(service, rep, title="Call back", assignee=rep.id, entity="deal", record_id=card.id)
    new_task(service, rep, title="Send the offer", assignee=rep.id)
    sign_in(client, rep)
    assert header(text_of(client.get("/tasks"))) == (2, 0)
    ticked = client.post(f"/tasks/{first.id}/done", headers=HTMX | {"HX-Current-URL": "http://localhost/tasks"},
                         data={"csrf_token": CSRF, "done": "1", "version": "1", "next": "/tasks",
                               "show_card": "1"}).get_data(as_text=True)  # as sent: HTML, not escaped
    assert ticked.lstrip().startswith(f'<li id="task-{first.id}"')  # the row htmx swaps into its target
    oob = re.search(r'<li id="header-tasks" hx-swap-oob="true">.*?</li>', ticked, re.S)
    assert oob and 'My tasks</span> <span class="count">1</span>' in oob.group(0)
    assert 'aria-current="page"' in oob.group(0)  # the page htmx says it is on: My tasks
    assert '<li id="header-bell" hx-swap-oob="true">' in ticked
    # Reopened from the card's timeline: the header counts it again.
    reopened = text_of(client.post(f"/tasks/{first.id}/done", headers=HTMX | {
        "HX-Current-URL": f"http://localhost/cards/deal/{card.id}"}, data={"csrf_token": CSRF, "version": "2"}))
    assert header(reopened) == (2, 0) and 'aria-current="page"' not in reopened
    # Without htmx nothing out of band: a redirect.
    assert client.post(f"/tasks/{first.id}/done", data={"csrf_token": CSRF, "done": "1", "version": "3"}
                       ).status_code == 302


def test_a_task_added_on_the_card_with_htmx_counts_in_the_header_at_once(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    answer = client.post(f"/cards/deal/{card.id}/tasks", headers=HTMX, data={
        "csrf_token": CSRF, "title": "Prepare the demo", "assignee": str(rep.id)}).get_data(as_text=True)
    assert answer.lstrip().startswith('<section id="timeline"') and "&lt;" not in answer
    assert 'id="timeline"' in answer and 'hx-swap-oob="true"' in answer and header(answer) == (1, 0)


# 2. Opening a card marks its notifications read --------------------------------------------------------------------

@contextmanager
def statements():
    """The SQL statements every engine runs meanwhile."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def _unread(engine, user_id):
    with engine.connect() as conn:
        return {row.text for row in conn.execute(sa.select(notifications.c.text).where(
            notifications.c.user_id == user_id, notifications.c.read_at.is_(None)))}


def test_opening_a_card_marks_its_notifications_read_for_that_user_only(client, rep, make_user, deal, service,
                                                                        fixed_clock, engine):
    boss = make_user("boss", ["sales_manager"], "sales")[0]
    mine, other = deal(rep), deal(rep, "Second deal")
    with service.engine.begin() as conn:
        for text, user, card in [("Won", rep, mine), ("Margin changed", rep, mine), ("Other deal", rep, other),
                                 ("Boss: won", boss, mine)]:
            notify(conn, user_id=user.id, text=text, now=fixed_clock.now(), entity="deal", record_id=card.id)
        notify(conn, user_id=rep.id, text="No card", now=fixed_clock.now())
    sign_in(client, rep)
    with statements() as seen:
        page = text_of(client.get(f"/cards/deal/{mine.id}"))
    updates = [s for s in seen if s.lstrip().upper().startswith("UPDATE") and "notifications" in s]
    assert len(updates) == 1, updates
    assert header(page) == (0, 2)  # the header already counts without the two just read
    assert _unread(engine, rep.id) == {"Other deal", "No card"}
    assert _unread(engine, boss.id) == {"Boss: won"}  # someone else's about the same card stay unread
    with statements() as seen:  # nothing unread about the card: the page writes nothing
        page = text_of(client.get(f"/cards/deal/{mine.id}"))
    assert header(page) == (0, 2)
    assert not [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
                and "sessions" not in s]


def test_a_card_one_may_not_open_marks_nothing_read(client, rep, make_user, deal, service, fixed_clock, engine):
    other_rep = make_user("other", ["sales"], "sales")[0]
    theirs = deal(other_rep)
    with service.engine.begin() as conn:  # e.g. sent before the deal changed hands
        notify(conn, user_id=rep.id, text="About their deal", now=fixed_clock.now(), entity="deal",
               record_id=theirs.id)
    sign_in(client, rep)
    assert client.get(f"/cards/deal/{theirs.id}").status_code == 404
    assert client.get(f"/cards/deal/{theirs.id}/edit").status_code == 404
    assert _unread(engine, rep.id) == {"About their deal"}


# 3. Task descriptions ---------------------------------------------------------------------------------------------

def test_task_descriptions_are_shown_escaped_and_shortened_with_the_whole_text_at_hand(client, rep, deal, service):
    card = deal(rep)
    long_text = "<b>Bring</b> the signed contract. " + "Then check every clause with legal. " * 10 + "THE END"
    new_task(service, rep, title="Short one", description="Ask for the <i>PO</i> number", assignee=rep.id,
             entity="deal", record_id=card.id)
    new_task(service, rep, title="Long one", description=long_text, assignee=rep.id, entity="deal", record_id=card.id)
    sign_in(client, rep)
    for url in ("/tasks", f"/cards/deal/{card.id}"):
        html = client.get(url).get_data(as_text=True)
        assert '<p class="task-description">Ask for the &lt;i&gt;PO&lt;/i&gt; number</p>' in html, url
        assert "<b>Bring</b>" not in html and "<i>PO</i>" not in html, url
        details = re.search(r'<details class="task-description"><summary>(.*?)</summary>(.*?)</details>', html, re.S)
        assert details, url
        summary, whole = details.groups()
        assert summary.startswith("&lt;b&gt;Bring&lt;/b&gt; the signed contract.") and "…" in summary
        assert "THE END" not in summary and "THE END" in whole, url


def test_a_description_typed_on_the_card_is_saved_with_the_task(client, rep, deal, service):
    card = deal(rep)
    sign_in(client, rep)
    answer = text_of(client.post(f"/cards/deal/{card.id}/tasks", headers=HTMX, data={
        "csrf_token": CSRF, "title": "Visit", "description": "  Bring the samples  ", "assignee": str(rep.id)}))
    assert "Bring the samples" in answer
    assert list_tasks(service, rep, TaskQuery(assignee=rep.id)).items[0].description == "Bring the samples"


# 4. Assignees are people who may open the card ----------------------------------------------------------------------

def _options(html: str) -> set[str]:
    select = re.search(r'<select id="task-assignee".*?</select>', html, re.S)
    assert select
    return set(re.findall(r'<option value="\d+"[^>]*>([^<]*)</option>', select.group(0)))


def test_the_assignee_picker_offers_only_people_who_may_open_the_card(client, rep, make_user, deal, service):
    make_user("other_rep", ["sales"], "sales")  # reads only his own deals
    make_user("hr_anna", ["hr"], "hr")  # reads no deals
    make_user("mk_olga", ["marketing"], "marketing")  # reads every deal
    make_user("root", ["admin"])
    card = deal(rep)
    sign_in(client, rep)
    assert _options(text_of(client.get(f"/cards/deal/{card.id}"))) == {"rep", "mk_olga", "root"}
    # A contact: sales reads its department's, so a colleague is offered, a rep of another department is not.
    make_user("colleague", ["sales"], "sales")
    make_user("abroad", ["sales"], "export")
    contact = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "emails": ["ann@example.com"]},
                             rep)
    offered = _options(text_of(client.get(f"/cards/contact/{contact.id}")))
    assert "colleague" in offered and "rep" in offered and "abroad" not in offered and "hr_anna" not in offered
    assert {name for _, name in card_readers(service, service.get("contact", contact.id, rep))} == offered


def test_an_assignee_who_may_not_open_the_card_is_refused_in_the_form_and_the_api(client, rep, make_user, deal,
                                                                                   service):
    hr, _ = make_user("hr_anna", ["hr"], "hr")
    card = deal(rep)
    sign_in(client, rep)
    refused = client.post(f"/cards/deal/{card.id}/tasks", data={"csrf_token": CSRF, "title": "Check",
                                                                "assignee": str(hr.id)})
    page = text_of(refused)
    assert refused.status_code == 422 and "hr_anna may not open this card" in page
    assert 'value="Check"' in page
    answer = text_of(client.post(f"/cards/deal/{card.id}/tasks", headers=HTMX, data={
        "csrf_token": CSRF, "title": "Check", "assignee": str(hr.id)}))
    assert "hr_anna may not open this card" in answer and 'aria-invalid="true"' in answer
    headers = make_user("api_rep", ["sales_manager"], "sales")[1]
    api = client.post("/api/v1/tasks", headers=headers, json={"title": "Check", "assignee": hr.id, "entity": "deal",
                                                                "record": card.id})
    body = api.get_json()
    assert api.status_code == 422 and api.headers["Content-Type"].startswith("application/problem+json")
    assert body["details"]["assignee"][0]["code"] == "task.assignee_cannot_read", body
    assert list_tasks(service, SYSTEM, TaskQuery()).items == ()
    ok = client.post("/api/v1/tasks", headers=headers, json={"title": "Check", "assignee": rep.id, "entity": "deal",
                                                               "record": card.id})
    assert ok.status_code == 201
    task = get_task(service, ok.get_json()["id"], rep)
    with pytest.raises(RecordValidationError):  # nor may it be handed to them later
        update_task(service, task.id, {"assignee": hr.id}, rep, expected_version=task.version)
    patched = client.patch(f"/api/v1/tasks/{task.id}", headers=headers | {"If-Match": '"1"'},
                           json={"assignee": hr.id})
    assert patched.status_code == 422
    assert client.post("/api/v1/tasks", headers=headers, json={"title": "Own", "assignee": hr.id}).status_code == 201


# 6. Rule actions in words ------------------------------------------------------------------------------------------

def test_a_rule_run_on_the_timeline_names_its_actions_in_words(client, make_user, service, deal, fixed_clock):
    root = make_user("root", ["admin"])[0]
    card = deal(root)
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=card.id, kind="rule", now=fixed_clock.now(), payload={
            "rule_key": "deal_won", "rule": "Deal won", "result": "done",
            "actions": ["create_task", "notify", "email", "webhook", "create_record", "run_rule", "made_up"]})
    sign_in(client, root)
    page = text_of(client.get(f"/cards/deal/{card.id}"))
    assert ("Rule «Deal won» ran: done (create a task, notify, send an e-mail, send a webhook, create a record, "
            "run another rule, made_up)") in page
    assert "create_task" not in page and "run_rule" not in page


# 7. Moments in the instance's time zone --------------------------------------------------------------------------

def test_the_time_zone_setting_is_checked_when_the_settings_are_read():
    assert Settings.from_env({"KARTOTEKA_SECRET_KEY": "s"}).timezone == "UTC"
    moscow = Settings.from_env({"KARTOTEKA_SECRET_KEY": "s", "KARTOTEKA_TIMEZONE": "Europe/Moscow"})
    assert str(moscow.zone) == "Europe/Moscow"
    with pytest.raises(ValueError, match=r"KARTOTEKA_TIMEZONE must be an IANA time zone .* not 'Mars/Olympus'"):
        Settings.from_env({"KARTOTEKA_SECRET_KEY": "s", "KARTOTEKA_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ValueError, match="KARTOTEKA_TIMEZONE"):
        moscow.__class__(database_url="sqlite://", config_dir=moscow.config_dir, secret_key="s",
                         instance_dir=moscow.instance_dir, timezone="../../etc/passwd")


def test_an_unknown_time_zone_stops_the_command_with_the_reason(runner):
    result = runner.invoke("worker", "--once", env={"KARTOTEKA_TIMEZONE": "Europe/Atlantis"})
    assert result.exit_code == 1
    assert "KARTOTEKA_TIMEZONE must be an IANA time zone such as UTC, Europe/Moscow or America/New_York, not " \
           "'Europe/Atlantis'." in result.output


@pytest.fixture
def moscow_app(engine, database_url, metadata, config_dir, clock, tmp_path):
    sync_indexes(engine, metadata)
    application = create_app(Settings(database_url=database_url, config_dir=config_dir, secret_key="test-secret",
                                      instance_dir=tmp_path / "instance", testing=True, timezone="Europe/Moscow"),
                             clock)
    yield application
    application.extensions["kartoteka"].engine.dispose()


def test_timeline_tasks_notifications_and_run_log_show_times_in_the_instance_zone(moscow_app, make_user, service,
                                                                                 deal, fixed_clock):
    client = moscow_app.test_client()
    root = make_user("root", ["admin"])[0]
    card = deal(root)
    now = fixed_clock.now()
    assert now == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=card.id, kind="note", now=now, body="Hello", user_id=root.id)
        notify(conn, user_id=root.id, text="News", now=now)
        conn.execute(sa.insert(rule_runs).values(entity="deal", rule_key="deal_won", record_id=card.id,
                                                 trigger="updated", source="ui", result="done", actions=[],
                                                 created_at=now))
    new_task(service, root, title="Call at noon", assignee=root.id, due_at=now + timedelta(hours=3))
    new_task(service, root, title="Whole day", assignee=root.id, due_at=datetime(2026, 3, 5).date())
    sign_in(client, root)
    tag = '<time datetime="2026-03-02T09:30:00Z" title="Europe/Moscow">Mar 2, 2026, 12:30\u202fPM MSK</time>'
    card_page = client.get(f"/cards/deal/{card.id}").get_data(as_text=True)
    assert tag in card_page
    assert tag in client.get("/notifications").get_data(as_text=True)
    assert tag in client.get("/cards/rule-runs").get_data(as_text=True)
    tasks = text_of(client.get("/tasks"))
    assert "Due Mar 2, 2026, 3:30\u202fPM MSK" in tasks  # 12:30 UTC
    assert "Due Mar 5, 2026" in tasks and "Due Mar 5, 2026," not in tasks  # a due date stays that day


def test_in_utc_the_zone_is_named_too(client, make_user, service, deal, fixed_clock):
    root = make_user("root", ["admin"])[0]
    card = deal(root)
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=card.id, kind="note", now=fixed_clock.now(), body="Hi")
        create_task(conn, title="t", now=fixed_clock.now())
    sign_in(client, root)
    assert ('<time datetime="2026-03-02T09:30:00Z" title="UTC">Mar 2, 2026, 9:30\u202fAM UTC</time>'
            in client.get(f"/cards/deal/{card.id}").get_data(as_text=True))

"""Saved views (named list filters) on both databases: saving, replacing, sharing, deleting, validation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.errors import BadRequest, NotFound, PermissionDenied
from kartoteka.records.views import SavedView, clean_query, delete_view, list_views, save_view
from kartoteka.storage.tables import saved_views


@pytest.fixture
def anna(make_user):
    return make_user("anna", ["sales"], "sales")[0]


@pytest.fixture
def boris(make_user):
    return make_user("boris", ["sales"], "sales")[0]


def names(views: list[SavedView]) -> list[tuple[str, bool]]:
    return [(v.name, v.mine) for v in views]


def test_save_and_list(engine, anna, clock):
    view = save_view(engine, anna, "deal", "  Won deals ", "stage__in=new,won&sort=-amount&q=abc", False, clock.now())
    assert view == SavedView(view.id, anna.id, "deal", "Won deals", "stage__in=new,won&sort=-amount&q=abc", False,
                             clock.now(), True)
    assert list_views(engine, anna, "deal") == [view]
    assert list_views(engine, anna, "company") == []


def test_saving_under_the_same_name_replaces_the_view(engine, anna, boris, clock):
    first = save_view(engine, anna, "deal", "Mine", "stage=new", False, clock.now())
    # the same name of another user or another entity is a different view
    other_user = save_view(engine, boris, "deal", "Mine", "stage=lost", False, clock.now())
    other_entity = save_view(engine, anna, "company", "Mine", "q=x", False, clock.now())
    again = save_view(engine, anna, "deal", "Mine ", "stage=won&sort=name", True, clock.now())
    assert again.id == first.id and again.query == "stage=won&sort=name" and again.shared
    assert len({first.id, other_user.id, other_entity.id}) == 3
    assert list_views(engine, anna, "deal") == [again]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(saved_views)).scalar() == 3


def test_own_views_first_then_shared_by_name(engine, anna, boris, clock):
    save_view(engine, anna, "deal", "zebra", "", False, clock.now())
    save_view(engine, anna, "deal", "Alpha", "", False, clock.now())
    save_view(engine, anna, "deal", "beta", "", True, clock.now())
    save_view(engine, boris, "deal", "Bravo", "", True, clock.now())
    save_view(engine, boris, "deal", "apple", "", True, clock.now())
    save_view(engine, boris, "deal", "Boris only", "", False, clock.now())
    save_view(engine, boris, "company", "Shared company view", "", True, clock.now())
    assert names(list_views(engine, anna, "deal")) == [
        ("Alpha", True), ("beta", True), ("zebra", True), ("apple", False), ("Bravo", False)]
    assert names(list_views(engine, boris, "deal")) == [
        ("apple", True), ("Boris only", True), ("Bravo", True), ("beta", False)]


def test_private_views_are_invisible_to_others(engine, anna, boris, clock):
    view = save_view(engine, anna, "deal", "Private", "stage=new", False, clock.now())
    assert list_views(engine, boris, "deal") == []
    with pytest.raises(NotFound):
        delete_view(engine, boris, view.id)
    assert names(list_views(engine, anna, "deal")) == [("Private", True)]


def test_shared_views_are_visible_but_only_their_author_deletes_them(engine, anna, boris, clock):
    view = save_view(engine, anna, "deal", "Team pipeline", "stage__in=new,won", True, clock.now())
    seen = list_views(engine, boris, "deal")
    assert seen == [SavedView(view.id, anna.id, "deal", "Team pipeline", "stage__in=new,won", True, clock.now(),
                              False)]
    with pytest.raises(PermissionDenied, match=r"^Only the author of a shared view may delete it\.$"):
        delete_view(engine, boris, view.id)
    assert list_views(engine, boris, "deal") == seen
    delete_view(engine, anna, view.id)
    assert list_views(engine, anna, "deal") == [] and list_views(engine, boris, "deal") == []


def test_deleting_an_unknown_view_is_not_found(engine, anna):
    with pytest.raises(NotFound):
        delete_view(engine, anna, 999_999)


def test_cursor_and_csrf_token_are_dropped_from_the_query(engine, anna, clock):
    view = save_view(engine, anna, "deal", "Tags", "?tags=a&cursor=eyJpZCI6NX0&q=&tags=b&csrf_token=t0k&sort=-id",
                     False, clock.now())
    assert view.query == "tags=a&q=&tags=b&sort=-id"
    assert list_views(engine, anna, "deal")[0].query == view.query
    assert clean_query("cursor=abc") == ""
    assert clean_query("q=%D0%98%D0%B2%D0%B0%D0%BD+a%26b") == "q=%D0%98%D0%B2%D0%B0%D0%BD+a%26b"


@pytest.mark.parametrize(("name", "query", "message"), [
    ("", "q=x", r"^The view needs a name\.$"),
    ("   ", "q=x", r"^The view needs a name\.$"),
    ("x" * 101, "q=x", r"^The view name may have at most 100 characters \(it has 101\)\.$"),
    ("Long", "q=" + "x" * 1999, r"^The view's filters are too long: at most 2000 characters \(they have 2001\)\.$"),
])
def test_invalid_views_are_rejected(engine, anna, clock, name, query, message):
    with pytest.raises(BadRequest, match=message):
        save_view(engine, anna, "deal", name, query, False, clock.now())
    assert list_views(engine, anna, "deal") == []


def test_limits_are_inclusive_and_a_long_cursor_does_not_count(engine, anna, clock):
    query = "q=" + "x" * 1998 + "&cursor=" + "c" * 500
    view = save_view(engine, anna, "deal", "n" * 100, query, False, clock.now())
    assert view.name == "n" * 100 and len(view.query) == 2000


def test_views_go_with_their_user(engine, anna, boris, clock):
    save_view(engine, anna, "deal", "Shared", "", True, clock.now())
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": anna.id})
    assert list_views(engine, boris, "deal") == []


def test_a_shared_view_over_a_field_someone_may_not_see_is_not_offered_to_them(client, engine, make_user, clock):
    """Its name and filters would tell a sales rep of the finance-only margin (and where the threshold lies)."""
    from tests.test_web import sign_in

    finance, _ = make_user("fina", ["finance"], "finance")
    rep, _ = make_user("rep", ["sales"], "sales")
    save_view(engine, finance, "deal", "Thin margins", "margin__lt=12.5", True, clock.now())
    save_view(engine, finance, "deal", "Best margins first", "sort=-margin", True, clock.now())
    save_view(engine, finance, "deal", "Won", "stage=won&sort=-amount&q=x", True, clock.now())
    save_view(engine, rep, "deal", "My own", "stage=new", False, clock.now())
    sign_in(client, rep)
    page = client.get("/cards/deal/").get_data(as_text=True)
    assert "Won" in page and "My own" in page
    assert "Thin margins" not in page and "Best margins" not in page and "margin" not in page
    sign_in(client, finance)
    page = client.get("/cards/deal/").get_data(as_text=True)
    assert "Thin margins" in page and "Best margins first" in page


def test_names_fields_reads_filters_and_sort():
    from kartoteka.records.views import names_fields

    assert names_fields("stage__ne=won&stage__ne=lost&sort=-amount&q=abc&total=exact&owner=3") == {
        "stage", "amount", "owner"}

"""Links every page repeats are built once per application root, and are the same as url_for's."""

from __future__ import annotations

from flask import url_for

from kartoteka.web import MAX_PAGE_URLS, page_url


def test_page_urls_are_url_fors_per_application_root(app):
    for root in ("", "/crm", "/other/root"):
        with app.test_request_context("/cards/", base_url=f"http://example.test{root}"):
            for endpoint, values in (("static", {"filename": "app.css"}), ("cards.index", {}),
                                     ("cards.list_view", {"entity_name": "deal"}), ("auth.logout", {})):
                expected = url_for(endpoint, **values)
                assert expected.startswith(root + "/")
                assert page_url(endpoint, **values) == expected
                assert page_url(endpoint, **values) == expected  # the second time from the cache


def test_the_cache_stays_bounded(app):
    with app.test_request_context("/cards/"):
        for i in range(MAX_PAGE_URLS + 10):
            assert page_url("cards.list_view", entity_name=f"e{i}") == f"/cards/e{i}/"
        assert len(app.extensions["kartoteka.page_urls"]) <= MAX_PAGE_URLS

"""`kartoteka duplicates ENTITY`: the card's groups of likely duplicates over existing data (registered in
kartoteka/cli.py)."""

from __future__ import annotations

import json
from typing import Any

import click

from kartoteka.errors import KartotekaError
from kartoteka.metadata.model import EntityDef
from kartoteka.records.duplicates import Group, groups, readable_rules


@click.command("duplicates")
@click.argument("entity")
@click.option("--as", "as_user", metavar="USERNAME", help="Only the records and fields this user may read "
              "(default: everything).")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="At most this many groups, the largest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, one per group (for programs).")
def duplicates_command(entity: str, as_user: str | None, limit: int, as_json: bool) -> None:
    """List the groups of ENTITY's records that likely repeat one another, by the card's `duplicates:` rules:
    the same phone, e-mail or INN, or close names within the same company (blocked on normalised keys: records are
    never compared pair by pair across the whole card)."""
    from kartoteka.cli import _fail, _platform, _principal_named
    from kartoteka.records.model import SYSTEM

    with _platform() as (_app, state):
        viewer = _principal_named(state, as_user) if as_user else SYSTEM
        try:
            card = state.service.entity(entity)
            if not card.duplicates.rules:
                _fail(f"{entity} has no duplicates rules: add a `duplicates:` section to its card "
                      "(docs/metadata.md#duplicates).")
            found = groups(state.service, card.name, viewer, limit=limit + 1)
        except KartotekaError as exc:
            _fail(exc.detail)
        shown, more = found[:limit], len(found) > limit
        if as_json:
            for group in shown:
                click.echo(json.dumps(group.as_json(card), ensure_ascii=False, default=str))
            return
        rules = ", ".join(r.key for r in readable_rules(card, viewer)) or "none"
        texts = _Texts(state, card, viewer, shown)
        for number, group in enumerate(shown, start=1):
            click.echo(f"Group {number}: {len(group.members)} records")
            for member in group.members:
                extra = texts.shown(member.show)
                click.echo(f"  #{member.id} {member.title}" + (f" ({extra})" if extra else ""))
            for ids, match in group.links:
                where = ", ".join(f"#{i}" for i in ids)
                if match.kind == "exact":
                    values = ", ".join(str(v) for v in match.values)
                    click.echo(f"    same {'+'.join(match.fields)} {values}: {where}")
                else:
                    click.echo(f"    {match.fields[0]} {match.score}% alike: {where}")
        count = f"{len(shown)}{'+' if more else ''}"
        click.echo(f"{count} group{'s' if len(shown) != 1 else ''} of likely duplicates in {card.name} (rules: {rules})"
                   + (f"; more beyond --limit {limit}" if more else "") + ".")


class _Texts:
    """The `show` values of the groups' members as text: records by their titles, users by their names."""

    def __init__(self, state: Any, entity: EntityDef, viewer: Any, shown: list[Group]) -> None:
        from kartoteka.records.lookup import record_titles
        from kartoteka.records.model import ids_in
        from kartoteka.users import user_names

        self.entity = entity
        self.titles: dict[int, str] = {}
        self.users: dict[int, str] = {}
        values = [m.show for g in shown for m in g.members]
        for name in entity.duplicates.show:
            field = entity.fields[name]
            ids = [i for v in values for i in ids_in(v.get(name))]
            if field.type.refers == "record" and ids:
                self.titles.update(record_titles(state.service, field.to or "", ids, viewer))
            elif field.type.refers == "user" and ids:
                self.users.update(user_names(state.engine, ids))

    def shown(self, values: dict[str, Any]) -> str:
        from kartoteka.web.formatting import format_value

        parts = []
        for name, value in values.items():
            field = self.entity.fields[name]
            text = format_value(field, value, "en", user_names=self.users, record_titles=self.titles)
            if text:
                parts.append(f"{field.label.get('en')}: {text}")
        return "; ".join(parts)

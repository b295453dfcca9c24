"""Schema migrations: applied once, recorded, safe to repeat."""

from pipeline import db


def test_upgrade_is_idempotent_and_recorded(conn):
    # the template already ran every migration; a second run applies nothing
    assert db.upgrade(conn) == []
    versions = [r[0] for r in conn.execute("SELECT version FROM news.schema_migrations")]
    assert versions == [m.version for m in db.migrations()]


def test_analyst_view_exists(conn):
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'news' AND table_name = 'v_articles' ORDER BY ordinal_position"
        )
    ]
    for expected in (
        "article_id",
        "url",
        "publisher",
        "title",
        "lead",
        "body",
        "author",
        "published_at",
        "fetched_at",
    ):
        assert expected in cols

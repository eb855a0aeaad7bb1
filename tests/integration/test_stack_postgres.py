"""The stack's private PostgreSQL cluster, and Alerta's database in it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_postgres_answers_queries(postgres_dsn: str) -> None:
    import psycopg2

    with psycopg2.connect(postgres_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT %s + 1, current_user", (41,))
        assert cursor.fetchone() == (42, "postgres")


def test_alerta_keeps_its_alerts_in_the_stack_postgres(
    postgres_dsn: str, alerta_client: object
) -> None:
    import psycopg2

    alerta_dsn = postgres_dsn.rsplit("/", 1)[0] + "/alerta"
    with psycopg2.connect(alerta_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.alerts') IS NOT NULL")
        assert cursor.fetchone() == (True,)

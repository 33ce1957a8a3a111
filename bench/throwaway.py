"""A fresh, empty database for one benchmark run: a SQLite file in a temporary PORTAL_DATA_DIR, or (when
DATABASE_URL names a Postgres server) a temporary database on that server. `drop()` removes it."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class ThrowawayDatabase:
    """Points DATABASE_URL / PORTAL_DATA_DIR at a fresh, empty database; call before django.setup()."""

    def __init__(self, *, prefix: str) -> None:
        self.prefix = prefix
        self.data_dir = tempfile.mkdtemp(prefix=f"{prefix}_")
        self.server_url = os.environ.get("DATABASE_URL") or ""
        self.pg_name: str | None = None
        self.pg_params: dict[str, Any] = {}
        self.label = ""

    def create(self) -> None:
        # Settings read these at import: set them before django.setup().
        os.environ["PORTAL_DATA_DIR"] = self.data_dir  # secret/credential keys, static root, SQLite file, queue
        if not self.server_url:
            os.environ.pop("DATABASE_URL", None)
            self.label = f"sqlite (temp file {self.data_dir}/portal.sqlite3)"
            return
        import dj_database_url
        import psycopg
        from psycopg import sql

        config = dj_database_url.parse(self.server_url)
        if "postgresql" not in config["ENGINE"]:
            raise SystemExit(f"bench: only SQLite (no DATABASE_URL) and Postgres are supported, not {config['ENGINE']}")
        self.pg_params = {
            "dbname": config["NAME"] or "postgres",
            "user": config.get("USER") or None,
            "password": config.get("PASSWORD") or None,
            "host": config.get("HOST") or None,
            "port": config.get("PORT") or None,
        }
        self.pg_name = f"{self.prefix}_{os.getpid()}"
        with psycopg.connect(**self.pg_params, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.pg_name)))
            row = conn.execute("SHOW server_version").fetchone()
        parts = urlsplit(self.server_url)
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + self.pg_name))
        self.label = (f"postgres {row[0] if row else '?'} (temp database {self.pg_name} on "
                      f"{parts.hostname}:{parts.port or 5432})")

    def drop(self) -> None:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django never set up: nothing to close
            pass
        if self.pg_name:
            import psycopg
            from psycopg import sql

            with psycopg.connect(**self.pg_params, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.pg_name)))
            self.pg_name = None
        shutil.rmtree(self.data_dir, ignore_errors=True)

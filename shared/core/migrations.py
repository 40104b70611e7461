"""Database migrations (Alembic) for each service's own database.

Every service keeps its revisions in ``services/<service>/migrations/versions``. A service checks
its database on start: at the newest revision it runs; with ``NTBCARE_AUTO_MIGRATE`` on (the
default when ``NTBCARE_ENV=development``, i.e. ``make run`` and the tests) it upgrades first;
otherwise it refuses to start and says which command migrates it, instead of failing later on a
missing table. ``make migrate`` / ``python -m shared.core.migrations upgrade [SERVICE]`` migrates.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from shared.core import config

if TYPE_CHECKING:
    from shared.core.db import Database

ROOT = Path(__file__).resolve().parents[2]


class UnmigratedDatabase(config.ConfigError):
    """The database is not at the newest revision."""


def migrations_dir(service: str) -> Path:
    return ROOT / "services" / service / "migrations"


def metadata_for(service: str) -> MetaData:
    """The service's full metadata: its own tables plus the event store, outbox, quarantine and
    consumer tables the shared store adds."""
    module = importlib.import_module(f"services.{service}.service")
    metadata: MetaData = module.build_store("sqlite://").metadata
    return metadata


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(service)))
    cfg.set_main_option("version_locations", str(migrations_dir(service) / "versions"))
    cfg.attributes["service"] = service
    cfg.attributes["url"] = url
    return cfg


def head(service: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(service, "sqlite://")).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(service: str, url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url or config.database_url(service)), revision)


def _has_tables(engine: Engine) -> bool:
    from sqlalchemy import inspect
    return bool(set(inspect(engine).get_table_names()) - {"alembic_version"})


def auto_migrate_enabled() -> bool:
    value = config.env("NTBCARE_AUTO_MIGRATE")
    if value is None:
        return config.is_development()
    return value.lower() in ("1", "true", "yes", "on")


_prepared: set[tuple[str, str]] = set()


def prepare(service: str, database: Database) -> None:
    """Called by each service on start, before it touches its tables. The runner's pre-flight and
    the service's storage both call it; the check (and any upgrade) runs once per process."""
    if (service, database.url) in _prepared:
        return
    _check_or_upgrade(service, database)
    _prepared.add((service, database.url))


def _check_or_upgrade(service: str, database: Database) -> None:
    if not (migrations_dir(service) / "versions").is_dir():
        database.create_all()  # a service without revisions yet (development only)
        return
    if auto_migrate_enabled():
        if current(database.engine) is None and _has_tables(database.engine):
            raise UnmigratedDatabase(
                f"the {service} database ({database.url}) has tables but no migration history: it was made "
                f"by an older version. Move it aside (e.g. delete ./var in development) or, if it matches "
                f"this version, stamp it: alembic stamp head with script_location services/{service}/migrations.")
        upgrade(service, database.url)
        return
    at, newest = current(database.engine), head(service)
    if at != newest:
        raise UnmigratedDatabase(
            f"the {service} database is at revision {at or 'none (empty or unmanaged)'}, this version needs "
            f"{newest}. Run `make migrate` (or `python -m shared.core.migrations upgrade {service}`), "
            f"or set NTBCARE_AUTO_MIGRATE=1.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("upgrade", "current", "revision"):
        print("usage: python -m shared.core.migrations upgrade [SERVICE…] | current [SERVICE…] | "
              "revision SERVICE MESSAGE", file=sys.stderr)
        return 2
    if argv[0] == "revision":
        service, message = argv[1], " ".join(argv[2:]) or "change"
        url = f"sqlite:///{Path('/tmp') / ('ntbcare-autogen-' + service + '.db')}"
        Path(url[len('sqlite:///'):]).unlink(missing_ok=True)
        upgrade(service, url)
        command.revision(alembic_config(service, url), message=message, autogenerate=True)
        return 0
    services = argv[1:] or list(config.SERVICES)
    for service in services:
        url = config.database_url(service)
        if argv[0] == "upgrade":
            upgrade(service, url)
            print(f"{service}: at {head(service)}")
        else:
            from shared.core.db import make_engine
            engine = make_engine(url)
            print(f"{service}: at {current(engine)}, newest {head(service)}")
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Database migrations (Alembic) for each service's own database.

Every service keeps its revisions in ``services/<service>/migrations/versions``, one branch labelled
with the service's name. The core tables are declared once, in two branches of their own under
``shared/core/migration_branches``: ``consumer`` (quarantine, consumer_checkpoints, processed_events,
handler_failures; every service) and ``event_store`` (events, outbox; the services that emit events).
Each service's initial revision ``depends_on`` the branches it uses, and only those are on its
``version_locations`` (``SERVICE_CORE_BRANCHES``), so reporting's database never gets an event store.
A service's history therefore has several heads: upgrades go to ``heads``, and a database is current
when every head is applied (Alembic's version table omits a head that a later revision depends on).

A service checks its database on start: at the newest revisions it runs; with
``NTBCARE_AUTO_MIGRATE`` on (the default when ``NTBCARE_ENV=development``, i.e. ``make run`` and the
tests) it upgrades first; otherwise it refuses to start and says which command migrates it, instead
of failing later on a missing table. ``make migrate`` / ``python -m shared.core.migrations upgrade
[SERVICE]`` migrates. Replicas starting together on one database upgrade it one after another
(the lock ``migrations`` of ``shared.core.exclusive``): the first runs the revisions, the others
find nothing to do.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from shared.core import config
from shared.core.exclusive import exclusive

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


CORE_BRANCHES = ("consumer", "event_store")


def core_branches(service: str) -> tuple[str, ...]:
    """The core branches the service's history depends on: the event store only where the service
    emits events (``ServiceStore(..., emits_events=...)``; reporting emits none)."""
    return CORE_BRANCHES if service in config.EMITTING_SERVICES else ("consumer",)


def core_branch_dir(branch: str) -> Path:
    return Path(__file__).resolve().parent / "migration_branches" / branch / "versions"


def branch_tables(branch: str) -> frozenset[str]:
    """The tables a core branch owns, as the code declares them."""
    from shared.core.consumer import consumer_tables
    from shared.core.eventstore import event_tables
    from shared.core.quarantine import quarantine_table
    from shared.core.shared_budget import budget_table

    metadata = MetaData()
    if branch == "consumer":
        quarantine_table(metadata)
        consumer_tables(metadata)
        budget_table(metadata)
    elif branch == "event_store":
        event_tables(metadata)
    else:
        raise ValueError(f"no core branch {branch!r} (there are {', '.join(CORE_BRANCHES)})")
    return frozenset(metadata.tables)


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(service)))
    cfg.set_main_option("path_separator", "os")
    locations = [migrations_dir(service) / "versions"] + [core_branch_dir(b) for b in core_branches(service)]
    cfg.set_main_option("version_locations", os.pathsep.join(str(location) for location in locations))
    cfg.attributes["service"] = service
    cfg.attributes["url"] = url
    return cfg


def script_directory(service: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(service, "sqlite://"))


def _branch_head(script: ScriptDirectory, branch: str) -> str:
    revision = script.get_revision(f"{branch}@head")
    if revision is None:
        raise CommandError(f"the {branch} branch has no revisions")
    return revision.revision


def head(service: str) -> str:
    """The newest revision of the service's own branch (its tables; not the core branches')."""
    return _branch_head(script_directory(service), service)


def heads(service: str) -> tuple[str, ...]:
    """Every head of the service's history: its own branch's first, then the core branches'."""
    script = script_directory(service)
    return tuple(_branch_head(script, branch) for branch in (service,) + core_branches(service))


def current(engine: Engine) -> tuple[str, ...]:
    """The revisions the database's version table records (empty: no migration history). A head
    that a recorded revision depends on is applied but not recorded: see ``missing``."""
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def missing(service: str, at: tuple[str, ...]) -> tuple[str, ...]:
    """The service's heads a database at ``at`` (its ``current``) lacks; empty when it is current.
    A head is applied when it is recorded or is an ancestor of a recorded revision through
    ``down_revision`` or ``depends_on``: Alembic's version table leaves out a head that a recorded
    revision depends on (a core branch's head, once the service's initial revision is applied).
    Raises ``UnmigratedDatabase`` for a recorded revision this version does not know."""
    script = script_directory(service)
    applied: set[str] = set()
    pending = list(at)
    while pending:
        name = pending.pop()
        if name in applied:
            continue
        try:
            revision = script.get_revision(name)
        except CommandError as error:
            raise UnmigratedDatabase(
                f"the {service} database is at revision {name}, which this version does not know "
                f"(made by a newer version?): {error}") from error
        if revision is None:
            continue
        applied.add(revision.revision)
        for parents in (revision.down_revision, revision.dependencies):
            pending.extend((parents,) if isinstance(parents, str) else (parents or ()))
    return tuple(name for name in heads(service) if name not in applied)


def describe(service: str, revisions: tuple[str, ...]) -> str:
    """``7d1e2f3a4b5c (routing), ff337c0ab861 (consumer)`` — each revision with its branch."""
    script = script_directory(service)
    named = []
    for name in revisions:
        revision = script.get_revision(name)
        labels = sorted(revision.branch_labels) if revision is not None else []
        named.append(f"{name} ({', '.join(labels)})" if labels else name)
    return ", ".join(named) or "none"


def upgrade(service: str, url: str | None = None, revision: str = "heads") -> None:
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
        # Replicas starting together share the database: one upgrades, the others wait for it
        # and then find nothing to do (without the lock both would create the same tables).
        with exclusive(database.engine, "migrations", wait=True):
            if not current(database.engine) and _has_tables(database.engine):
                raise UnmigratedDatabase(
                    f"the {service} database ({database.url}) has tables but no migration history: it was "
                    f"made by an older version. Move it aside (e.g. delete ./var in development) or, if it "
                    f"matches this version, stamp it: python -m shared.core.migrations stamp {service}.")
            upgrade(service, database.url)
        return
    at = current(database.engine)
    lacking = missing(service, at)
    if lacking:
        raise UnmigratedDatabase(
            f"the {service} database is at revision {_applied(service, at, lacking) or 'none (empty or unmanaged)'}, "
            f"this version needs {describe(service, lacking)}. Run `make migrate` (or `python -m "
            f"shared.core.migrations upgrade {service}`), or set NTBCARE_AUTO_MIGRATE=1.")


def _applied(service: str, at: tuple[str, ...], lacking: tuple[str, ...]) -> str:
    """What the database has: the recorded revisions that are not heads, then the heads applied."""
    newest = heads(service)
    shown = [name for name in at if name not in newest] + [name for name in newest if name not in lacking]
    return describe(service, tuple(shown)) if at else ""


def status(service: str, engine: Engine) -> str:
    """One line for ``current``: the revisions the database is at, and whether it is current."""
    at = current(engine)
    lacking = missing(service, at)
    if not lacking:
        return f"{service}: at {describe(service, heads(service))}: up to date"
    return (f"{service}: at {_applied(service, at, lacking) or 'none'}; needs {describe(service, lacking)} "
            f"(run `make migrate`)")


def stamp(service: str, url: str | None = None) -> None:
    """Record every head in the database's version table without running a revision (a database
    made by ``create_all`` that matches this version)."""
    command.stamp(alembic_config(service, url or config.database_url(service)), "heads")


def new_revision(target: str, message: str) -> None:
    """Autogenerate a revision on ``target``: a service's own branch (its tables only) or a core
    branch (``consumer``, ``event_store``: that branch's tables only), against a throw-away SQLite
    database upgraded to the heads. A change to a core table thus lands once, in its branch."""
    if target in CORE_BRANCHES:
        service = next(name for name in config.SERVICES if target in core_branches(name))
        owned = branch_tables(target)
        keep = owned.__contains__
    elif target in config.DATABASE_SERVICES:
        service = target
        core = frozenset().union(*(branch_tables(branch) for branch in core_branches(service)))
        keep = lambda name: name not in core  # noqa: E731
    else:
        raise ValueError(f"no branch {target!r}: give a service ({', '.join(config.DATABASE_SERVICES)}) "
                         f"or a core branch ({', '.join(CORE_BRANCHES)})")
    path = Path("/tmp") / f"ntbcare-autogen-{service}.db"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade(service, url)
    cfg = alembic_config(service, url)
    cfg.attributes["include_table"] = keep
    command.revision(cfg, message=message, autogenerate=True, head=f"{target}@head")


USAGE = ("usage: python -m shared.core.migrations upgrade [SERVICE…] | current [SERVICE…] | "
         "stamp SERVICE | revision SERVICE|consumer|event_store MESSAGE")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("upgrade", "current", "revision", "stamp") \
            or (argv[0] in ("revision", "stamp") and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "revision":
        try:
            new_revision(argv[1], " ".join(argv[2:]) or "change")
        except ValueError as error:
            print(f"{error}\n{USAGE}", file=sys.stderr)
            return 2
        return 0
    services = argv[1:] or list(config.DATABASE_SERVICES)
    unknown = [service for service in services if service not in config.DATABASE_SERVICES]
    if unknown:
        print(f"no service {', '.join(unknown)} (there are {', '.join(config.DATABASE_SERVICES)})\n{USAGE}",
              file=sys.stderr)
        return 2
    for service in services:
        url = config.database_url(service)
        if argv[0] == "upgrade":
            upgrade(service, url)
            print(f"{service}: at {describe(service, heads(service))}")
        elif argv[0] == "stamp":
            stamp(service, url)
            print(f"{service}: stamped {describe(service, heads(service))}")
        else:
            from shared.core.db import make_engine
            engine = make_engine(url)
            try:
                print(status(service, engine))
            except UnmigratedDatabase as error:
                print(f"{service}: {error}")
            finally:
                engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Alembic environment every service's ``migrations/env.py`` delegates to: it migrates the
database named by the config (or the service's configured URL) against the service's metadata."""
from __future__ import annotations

import re
from typing import Any

from alembic import context

from shared.core.db import make_engine


GENERATION_TABLE = re.compile(r".*_g\d+$")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Reporting's projection generations (``complaints_g3`` …) are created and dropped at run
    time by its rebuild; migrations must leave them alone."""
    if type_ == "table" and GENERATION_TABLE.match(name or ""):
        return False
    return True


def run() -> None:
    from shared.core import config as ntbcare_config
    from shared.core.migrations import metadata_for

    cfg = context.config
    service = cfg.attributes["service"]
    url = cfg.attributes.get("url") or ntbcare_config.database_url(service)
    metadata = metadata_for(service)
    # ``python -m shared.core.migrations revision`` compares only the target branch's tables.
    include_table = cfg.attributes.get("include_table")

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if include_table is not None and type_ == "table" and not include_table(name or ""):
            return False
        return include_object(obj, name, type_, reflected, compare_to)

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=connection.dialect.name == "sqlite",
                              compare_type=True, include_object=include)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()

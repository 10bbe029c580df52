"""Alembic environment: runs against the engine the caller put in `config.attributes` (see `db.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from prosocial.collect.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` command line with sqlalchemy.url set in an ini file
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()

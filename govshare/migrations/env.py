"""Alembic environment: runs on the connection handed over by ``govshare.store``.

No models are imported: each migration carries its own schema and SQL, so that it does the
same thing forever, whatever the domains' code becomes (tests/govshare/test_migrations.py
checks that the models and the migrations agree).
"""

from alembic import context

config = context.config


def run_migrations_online() -> None:
    # A migration's writes do not set the change stamp (govshare.changestamp): its table may not exist yet.
    connection = config.attributes["connection"].execution_options(govshare_change_stamp_off=True)
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("govshare migrations run online only: use 'govshare init'")
run_migrations_online()

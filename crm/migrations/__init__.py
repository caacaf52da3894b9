"""Alembic migrations of the store's schema (``crm.store.Base.metadata``).

``Store.create_schema()`` runs them (``alembic upgrade head``) with a configuration built
in code; there is no ``alembic.ini``. To write the next revision after changing a model::

    python -c "from alembic import command; from crm.store import alembic_config; \\
    command.revision(alembic_config('sqlite:///scratch.db'), 'what changed', autogenerate=True)"

on a scratch database already at head, then review the generated file by hand.
"""

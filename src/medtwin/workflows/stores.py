"""The installation's stores as one value: database, signing key, audit log, consents, runs, decisions.

:func:`open_stores` opens them the way every command does (database from
``MEDTWIN_DATABASE_URL`` or the default SQLite file under the data home,
migrated to the latest revision; the Ed25519 key beside it, created on first
use; a signed head checkpoint for the audit log).  :func:`data_access` is the
consent gate of one (actor, purpose), or ``OpenData`` when the caller declared
the data non-identifiable.

Examples
--------
>>> import os, tempfile
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from medtwin.io.storage import make_engine
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db"))
>>> stores = Stores.for_engine(engine, Ed25519PrivateKey.generate())
>>> type(data_access(stores, "alice", "treatment", "synthetic")).__name__
'OpenData'
>>> engine.dispose()
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

__all__ = ["Stores", "data_access", "default_actor", "open_stores"]


@dataclass(frozen=True)
class Stores:
    """Where a workflow records: the engine, the signing key and the stores sharing its audit log.

    Attributes
    ----------
    engine : sqlalchemy.engine.Engine
    key : Ed25519PrivateKey
        Signs provenance records and audit entries.
    log : AuditLog
    consents : ConsentStore
    runs : RunStore
    decisions : DecisionStore
    """

    engine: Any
    key: Any
    log: Any
    consents: Any
    runs: Any
    decisions: Any

    @classmethod
    def for_engine(cls, engine, key, *, checkpoint=None, migrate: bool = True) -> Stores:
        """The stores on *engine* (migrated to the latest revision first unless ``migrate=False``), signing
        with *key*; *checkpoint* is the audit log's signed head checkpoint file (optional)."""
        from medtwin.governance.audit import AuditLog
        from medtwin.governance.consent_store import ConsentStore
        from medtwin.governance.decision_store import DecisionStore
        from medtwin.governance.runs import RunStore
        from medtwin.io.storage import upgrade

        if migrate:
            upgrade(engine)
        log = AuditLog(engine, key, checkpoint=checkpoint)
        return cls(engine, key, log, ConsentStore(engine, log), RunStore(engine, log, key),
                   DecisionStore(engine, log, key))

    def public_keys(self) -> list:
        """The keys trusted to have signed stored records (this installation's)."""
        return [self.key.public_key()]


def open_stores() -> Stores:
    """This installation's stores (database from ``MEDTWIN_DATABASE_URL`` or the default file; key beside it)."""
    from medtwin.governance.audit_checkpoint import checkpoint_path
    from medtwin.governance.provenance import load_or_create_key
    from medtwin.io.storage import data_home, database_url, make_engine, upgrade

    engine = make_engine(database_url())
    upgrade(engine)
    key = load_or_create_key(data_home() / "keys")
    # signed head checkpoint beside the key: `audit verify` detects a truncated or emptied log
    return Stores.for_engine(engine, key, checkpoint=checkpoint_path(data_home() / "keys", engine), migrate=False)


def data_access(stores: Stores, actor: str, purpose: str | None, open_data: str | None):
    """The consent gate for (actor, purpose), or ``OpenData`` when the data are declared non-identifiable."""
    from medtwin.governance.consent_store import ConsentGate
    from medtwin.io.access import OpenData

    return OpenData(open_data) if open_data else ConsentGate(stores.consents, actor, purpose)


def default_actor() -> str:
    """The login name, or ``medtwin-cli`` where there is none (containers)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        return "medtwin-cli"

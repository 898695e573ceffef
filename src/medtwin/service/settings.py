"""The service's settings, read from the environment (``MEDTWIN_*``) by pydantic-settings.

Nothing is read at import time: :class:`ServiceSettings` is built by :func:`medtwin.service.app.create_app`
(or passed to it by a test).  The database is the installation's (``MEDTWIN_DATABASE_URL``, else the default
SQLite file under the data home, exactly as :func:`medtwin.workflows.stores.open_stores` finds it).

==============================  ===========================================================================
variable                        meaning
==============================  ===========================================================================
``MEDTWIN_DATABASE_URL``        SQLAlchemy URL (default: ``sqlite:///<data home>/medtwin.db``)
``MEDTWIN_SECRET_KEY``          signs tokens and session cookies; default: a random key kept (0600) in
                                ``<data home>/keys/service-secret`` so tokens survive a restart
``MEDTWIN_TOKEN_LIFETIME_S``    seconds a bearer token / session cookie stays valid (default 8 h)
``MEDTWIN_CSRF``                check the CSRF token on cookie-authenticated form posts (default true)
``MEDTWIN_DEMO``                seed the shipped demo ward on start (``medtwin serve --demo``)
``MEDTWIN_SECURE_COOKIES``      mark the session cookie ``Secure`` (behind HTTPS; default false)
``MEDTWIN_ADMIN_PASSWORD``      create the user ``MEDTWIN_ADMIN_USER`` (default ``admin``) on start if absent
``MEDTWIN_JOB_WORKERS``         threads for background jobs (default 2)
==============================  ===========================================================================

Examples
--------
>>> s = ServiceSettings(database_url="sqlite://", secret_key="k" * 32, token_lifetime_s=60)
>>> s.token_lifetime_s, s.csrf, s.demo
(60, True, False)
"""

from __future__ import annotations

import secrets

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Settings of one service instance (environment variables ``MEDTWIN_<FIELD>``, case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="MEDTWIN_", extra="ignore")

    database_url: str | None = Field(None, description="SQLAlchemy URL; None: the installation's default")
    secret_key: str | None = Field(None, min_length=16, description="token signing key; None: kept in data home")
    token_lifetime_s: int = Field(8 * 3600, gt=0, description="bearer token / session cookie lifetime, s")
    csrf: bool = Field(True, description="check CSRF tokens on cookie-authenticated form posts")
    demo: bool = Field(False, description="seed the demo ward on start")
    secure_cookies: bool = Field(False, description="session cookie only over HTTPS")
    home: str | None = Field(None, description="data home override (default MEDTWIN_HOME / XDG)")
    admin_user: str = Field("admin", description="login of the admin created on first start")
    admin_password: str | None = Field(None, description="creates the admin user on start when absent")
    job_workers: int = Field(2, ge=1, le=32, description="threads running background jobs (trials)")
    log_level: str = Field("INFO", description="level of the JSON logs")
    password_time_cost: int = Field(3, ge=1, le=20, description="argon2id passes (RFC 9106 default 3)")
    password_memory_kib: int = Field(65536, ge=1024, le=4194304, description="argon2id memory, KiB (64 MiB)")

    def resolved_database_url(self) -> str:
        """The database URL: :attr:`database_url`, else the installation's (``medtwin.io.storage.database_url``)."""
        from medtwin.io.storage import database_url

        return self.database_url or database_url()

    def data_home(self):
        """The folder of the signing key and the default secret (``medtwin.io.storage.data_home``)."""
        from pathlib import Path

        from medtwin.io.storage import data_home

        return Path(self.home).expanduser() if self.home else data_home()

    def resolved_secret_key(self) -> str:
        """:attr:`secret_key`, else the installation's secret (created 0600 on first use)."""
        if self.secret_key:
            return self.secret_key
        import os

        from medtwin.io.storage import private_dir, write_private_temp

        folder = private_dir(self.data_home() / "keys")
        path = folder / "service-secret"
        if not path.exists():
            tmp = write_private_temp(folder, path.name, secrets.token_urlsafe(48).encode())
            try:
                os.link(tmp, path)  # create only if absent: concurrent first starts agree on one key
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()

"""``medtwin serve --demo``: seed a working ward (demo users; the shipped patients are added by the pages' seeding).

Demo users (password = the role name followed by ``-demo``, e.g. ``clinician-demo``): ``clinician``,
``pharmacist``, ``researcher``, ``auditor``, ``admin``.  Seeding is idempotent (a second start adds nothing).
"""

from __future__ import annotations

__all__ = ["DEMO_USERS", "seed_demo"]

#: (login, role, display name); the password is ``<role>-demo``.
DEMO_USERS = (("clinician", "clinician", "Dr. Clara Clinician"), ("pharmacist", "pharmacist", "Phil Pharmacist"),
              ("researcher", "researcher", "Rita Researcher"), ("auditor", "auditor", "Aude Auditor"),
              ("admin", "admin", "Adam Admin"))


def seed_demo(app) -> None:
    """Create the demo users (if absent) on the app's stores."""
    users = app.state.users
    for login, role, name in DEMO_USERS:
        if users.get(login) is None:
            users.create(login, f"{role}-demo", role, name)

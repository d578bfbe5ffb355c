"""Who may do what on the pages (groups made by migration 0001_groups).

* everyone signed in reads every page;
* ``ops`` and ``admin`` (and staff, and superusers) act on exceptions: acknowledge,
  resolve;
* ``executive`` reads only.
"""

from __future__ import annotations

from typing import Any

OPS = "ops"
EXECUTIVE = "executive"
ADMIN = "admin"
GROUPS = (OPS, EXECUTIVE, ADMIN)
ACTING_GROUPS = (OPS, ADMIN)


def can_act(user: Any) -> bool:
    """May ``user`` acknowledge and resolve exceptions? One query, remembered on the user."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:
        return True
    cached = getattr(user, "_observatory_can_act", None)
    if cached is None:
        cached = user.groups.filter(name__in=ACTING_GROUPS).exists()
        user._observatory_can_act = cached
    return bool(cached)

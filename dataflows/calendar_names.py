"""Calendar names: the canonical spelling of an ``exchange_calendars`` code or ``24/7``.

Apart from :mod:`dataflows.sessions` because the settings check a calendar name in every
``sentinel`` command, and that module's numpy and pandas cost 0.8 s to import.
"""

from __future__ import annotations

import functools

ALWAYS = "24/7"
DEFAULT_CALENDAR = "XNYS"
_ALIASES = {"always": ALWAYS, "24x7": ALWAYS}
_COMMON = {ALWAYS, "XNYS", "XNAS", "XLON"}


class UnknownCalendar(ValueError):
    """A name that is not an ``exchange_calendars`` code nor ``24/7``."""


def normalize(name: str) -> str:
    """The canonical spelling of a calendar name, or :class:`UnknownCalendar`.

    >>> normalize("xnys"), normalize("always"), normalize("24/7")
    ('XNYS', '24/7', '24/7')
    """
    key = name.strip()
    if key.lower() in _ALIASES:
        return _ALIASES[key.lower()]
    if key.upper() in _COMMON:  # no need to import exchange_calendars (about 1 s)
        return key.upper()
    names = _names()
    canonical = names.get(key.upper())
    if canonical is None:
        raise UnknownCalendar(
            f"unknown market calendar {name!r}: use an exchange_calendars code "
            f"such as XNYS, XLON or XTKS, or {ALWAYS!r} for a market that never closes"
        )
    return canonical


@functools.cache
def _names() -> dict[str, str]:
    import exchange_calendars as xcals

    return {n.upper(): n for n in xcals.get_calendar_names(include_aliases=True)}


def calendar_names() -> list[str]:
    """Every calendar code accepted (aliases included), sorted."""
    return sorted(_names().values())

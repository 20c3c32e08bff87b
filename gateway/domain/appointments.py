"""Appointments in the project's words: the bounds every booking respects."""

from __future__ import annotations

from datetime import timedelta

# No appointment lasts longer: the booking service refuses longer ones, and overlap searches
# (free slots, the store's range scans) look back only this far for one still running.
MAX_DURATION = timedelta(days=1)

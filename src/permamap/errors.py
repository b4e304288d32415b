"""Errors a user can act on.

Every error raised on purpose by permamap derives from :class:`PermamapError`. Its message is one
readable line naming the file or config key, the bad value and the fix. The workflow layer
(:mod:`permamap.smk`) and the CLI print that line instead of a traceback.
"""

from __future__ import annotations


class PermamapError(Exception):
    """Base class: an error with a message meant for the user, not a developer."""


class ConfigError(PermamapError):
    """The configuration is invalid (schema or semantic check)."""


class InputDataError(PermamapError):
    """An input raster or table is unusable (no CRS, no overlap, implausible units, ...)."""


class DownloadError(PermamapError):
    """A download failed in a way retries could not fix (404, auth, corrupt file, ...)."""

"""What can go wrong with an action, each with a message a responder can act on at 2 AM."""

from __future__ import annotations

from oncall.config import ConfigError as _CoreConfigError


class ActionError(Exception):
    """Base: the action did not happen (or did not finish); the message says why and what to do."""


class ConfigError(ActionError, _CoreConfigError):
    """oncall.toml (or a target in it) is missing, malformed, or names a secret literally (also the
    core's config error, so a caller catching either sees it)."""


class BadArguments(ActionError):
    """An adapter was given arguments it does not take, or is missing one it needs."""


class Refused(ActionError):
    """The action was refused before anything was read or written (read-only, not confirmed)."""


class StateMoved(ActionError):
    """The target changed between the plan and the write (or since the action, for an undo)."""


class TargetError(ActionError):
    """The target could not be read or written: down, 5xx, refused the request, file unreadable."""


class InvalidChange(ActionError):
    """The new state would be broken (a config that does not validate); the old one is kept."""


class NotUndoable(ActionError):
    """This action cannot be undone (nothing was written, or the adapter has no way back)."""

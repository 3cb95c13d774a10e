"""The one exception type for bad user input, raised by the core and mapped to exit 2 by the CLI.

A responder's typo (a filter term, an option value, a key to stratify by) must read as "fix your
command", and a bug must never read as that: the CLI maps `InputError` to exit 2 explicitly and
treats every other unexpected exception as an internal error (cliutil.EXIT_INTERNAL). So core code
raises `InputError` (or a subclass such as `FilterError`) for input it rejects, never a bare
ValueError, which Python itself raises for bugs.
"""

from __future__ import annotations


class InputError(Exception):
    """Input the responder gave cannot be used; the message names it and says what is allowed."""

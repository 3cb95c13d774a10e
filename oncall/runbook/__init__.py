"""Runbooks: Markdown with query steps, evidence gates and actions (parse, params, run, library)."""

from oncall.runbook.library import find_runbook, list_runbooks
from oncall.runbook.model import Runbook, RunbookError
from oncall.runbook.params import resolve_params
from oncall.runbook.run import Event, RunbookRun

__all__ = ["Event", "Runbook", "RunbookError", "RunbookRun", "find_runbook", "list_runbooks", "resolve_params"]

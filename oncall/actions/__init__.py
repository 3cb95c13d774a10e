"""Actions: changes to the systems an LLM feature runs on (gateway config, flags, prompt labels,
webhooks), each planned, confirmed, written, verified and audited, and undoable.

The core API, used the same way by the CLI (`oncall action ...`), runbook steps and the console:

    from oncall.actions import get_adapter, plan, execute, plan_undo, undo
"""

from oncall.actions.config import ActionsConfig, Target, load_config
from oncall.actions.engine import confirmation_ok, execute, get_adapter, plan, plan_undo, undo
from oncall.actions.errors import (
    ActionError,
    BadArguments,
    ConfigError,
    InvalidChange,
    NotUndoable,
    Refused,
    StateMoved,
    TargetError,
)
from oncall.actions.model import ActionRecord, Plan, Verification

__all__ = [
    "ActionError", "ActionRecord", "ActionsConfig", "BadArguments", "ConfigError", "InvalidChange", "NotUndoable",
    "Plan", "Refused", "StateMoved", "Target", "TargetError", "Verification", "confirmation_ok", "execute",
    "get_adapter", "load_config", "plan", "plan_undo", "undo",
]

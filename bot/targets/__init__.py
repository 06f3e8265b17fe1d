"""Deploy targets: one interface (`base.Target`), one module per kind."""

from bot.targets.base import DeployContext, Running, StepResult, Target, TargetError, make_target

__all__ = ["DeployContext", "Running", "StepResult", "Target", "TargetError", "make_target"]

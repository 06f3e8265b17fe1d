"""Deploy targets: one interface (`base.Target`), one module per kind; bot/plugins.py lists them."""

from bot.targets.base import DeployContext, Running, StepResult, Target, TargetError

__all__ = ["DeployContext", "Running", "StepResult", "Target", "TargetError"]

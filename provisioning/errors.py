"""Typed errors of the provisioning package: one root, structured fields."""

from __future__ import annotations


class ProvisionError(Exception):
    """Root of every error ``kiosk-provision`` reports."""


class ConfigError(ProvisionError):
    """A booth configuration that cannot be used; ``key`` names the setting (``section.key``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class TargetError(ProvisionError):
    """The target system refused an operation (a command failed, a path escapes the root)."""

    def __init__(self, operation: str, reason: str, *, returncode: int | None = None) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason
        self.returncode = returncode


class ApplyError(ProvisionError):
    """A change of a step failed, or did not hold once applied."""

    def __init__(self, step: str, change: str, reason: str) -> None:
        super().__init__(f"{step}: {change}: {reason}")
        self.step = step
        self.change = change
        self.reason = reason

"""Keel: the production layer for LLM features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "Job", "JobFailed", "KeelAPIError", "__version__"]
SDK = ("Client", "Job", "JobFailed", "KeelAPIError")

if TYPE_CHECKING:
    from keel.sdk import Client, Job, JobFailed, KeelAPIError


def __getattr__(name: str) -> Any:
    if name in SDK:  # imported on first use: `import keel` stays light
        from keel import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'keel' has no attribute {name!r}")

"""Checks: one registry shared by evals and guards. A check reads a ``CheckContext`` (the output and
what is known about the call) and returns a ``Verdict(passed, score, reason)``.

    check = make_check({"type": "contains", "value": "refund"})
    verdict = check(CheckContext(output="Refunds take five days."))

Any check name can take a ``not-`` prefix to invert it. Plugins register factories under the
``keel.checks`` entry point — the same door the built-ins use.
"""

from keel.checks.base import Check, CheckContext, CheckError, Verdict
from keel.checks.registry import available, make_check, register

__all__ = ["Check", "CheckContext", "CheckError", "Verdict", "available", "make_check", "register"]

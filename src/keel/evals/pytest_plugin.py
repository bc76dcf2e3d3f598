"""Eval suites as pytest tests: ``pytest --keel-evals evals/`` collects every suite file and makes each
case a test item (its check reasons are the failure message), plus one ``gate`` item per suite.

Each suite runs once, on the first of its items, through the same runner as ``keel eval``; the
project folder is the suite folder's parent (``<project>/evals/<suite>.yaml``), the configuration
``KEEL_CONFIG`` or the embedded default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.evals.gate import Rule, apply_gate
from keel.evals.results import EvalRun, ResultCache
from keel.evals.runner import require_feature, run_suite
from keel.evals.suite import Suite, load_suite


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keel")
    group.addoption("--keel-evals", action="store_true", help="collect Keel eval suites (evals/*.yaml) as tests")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if not parent.config.getoption("--keel-evals", default=False):
        return None
    if file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "evals":
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        self.suite = load_suite(self.path)
        self._outcome: tuple[EvalRun, list[Rule]] | None = None
        for case in self.suite.spec.cases:
            yield CaseItem.from_parent(self, name=case.id)
        yield GateItem.from_parent(self, name="gate")

    def outcome(self) -> tuple[EvalRun, list[Rule]]:
        if self._outcome is None:
            self._outcome = asyncio.run(_run(self.suite))
        return self._outcome


async def _run(suite: Suite) -> tuple[EvalRun, list[Rule]]:
    from keel.config import keel_home, load_settings
    from keel.features.pipeline import open_pipeline

    settings = load_settings(None)
    async with open_pipeline(settings, keel_home(settings), suite.path.parent.parent) as pipeline:
        require_feature(pipeline, suite)
        run = await run_suite(pipeline, suite, cache=ResultCache(pipeline.store.evals))
        return run, apply_gate(suite, run, None)


class CaseItem(pytest.Item):
    def runtest(self) -> None:
        parent: Any = self.parent
        run, _ = parent.outcome()
        result = next((r for r in run.results if r.case_id == self.name), None)
        if result is None:
            raise EvalFailure(f"case {self.name} did not run (the run was interrupted)")
        if result.error:
            raise EvalFailure(f"error: {result.error}")
        if not result.passed:
            reasons = "\n".join(f"  {c.check}: {c.reason}" for c in result.checks if not c.passed)
            raise EvalFailure(f"score {result.score:.2f}\n{reasons}\noutput: {result.output[:500]}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, EvalFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"eval case {self.name}"


class GateItem(CaseItem):
    def runtest(self) -> None:
        parent: Any = self.parent
        _, rules = parent.outcome()
        failed = [f"  {r.name}: {r.detail}" for r in rules if not r.passed]
        if failed:
            raise EvalFailure("gate failed:\n" + "\n".join(failed))


class EvalFailure(Exception):
    """A case or gate that did not pass (shown without a traceback)."""

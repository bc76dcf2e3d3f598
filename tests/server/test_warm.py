"""`keel serve` warms the default model at startup; another local chat model (a tier) loads when
first asked, so installing keel[accurate] does not double the idle memory or the start."""

from __future__ import annotations

import time
from pathlib import Path

from keel.config.defaults import SMOLLM
from keel.server import build_app
from tests.conftest import RunningServer, make_settings

TIERS = f"""
deployments:
  small: {{provider: local, model: {SMOLLM}, context_window: 512}}
  large: {{provider: local, model: {SMOLLM}, context_window: 512}}
models:
  quick: {{deployments: [small]}}
  best: {{deployments: [large]}}
default_model: quick
"""


def test_startup_loads_the_default_model_and_leaves_other_tiers_for_their_first_call(home: Path) -> None:
    app = build_app(make_settings(TIERS), home, auth=False, warm=True)
    adapters = app.service.gateway.adapters
    with RunningServer(app):
        deadline = time.monotonic() + 60
        while not adapters["small"].loaded and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # had it been scheduled with the default, it would be loaded by now too
        assert adapters["small"].loaded and not adapters["large"].loaded

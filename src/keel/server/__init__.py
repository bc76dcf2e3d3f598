"""The HTTP edge: an OpenAI-compatible ASGI server."""

from keel.server.app import KeelApp
from keel.server.factory import build_app

__all__ = ["KeelApp", "build_app"]

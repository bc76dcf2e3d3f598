"""Honest fakes shipped with Keel: a scripted provider, a fault-injecting server, span capture."""

from keel.testing.fault_server import Fault, FaultServer
from keel.testing.scripted import Reply, ScriptedProvider
from keel.testing.spans import CapturedSpan, SpanCapture

__all__ = ["CapturedSpan", "Fault", "FaultServer", "Reply", "ScriptedProvider", "SpanCapture"]

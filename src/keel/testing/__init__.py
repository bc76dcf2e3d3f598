"""Honest fakes shipped with Keel: a scripted provider, a fault-injecting server, span capture.

Importing the test kit marks this process (and the processes it starts) as a test process:
``KEEL_TESTING=1`` offers its fake providers (``provider: scripted``), which a production install,
never importing this package, does not list or accept.
"""

import os

os.environ.setdefault("KEEL_TESTING", "1")

from keel.testing.fault_server import Fault, FaultServer
from keel.testing.scripted import Reply, ScriptedProvider
from keel.testing.spans import CapturedSpan, SpanCapture

__all__ = ["CapturedSpan", "Fault", "FaultServer", "Reply", "ScriptedProvider", "SpanCapture"]

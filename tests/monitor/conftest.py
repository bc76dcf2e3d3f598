from tests.features.conftest import pipeline, project

__all__ = ["pipeline", "project"]

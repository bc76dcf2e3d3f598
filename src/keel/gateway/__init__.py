"""Routing and reliability: each concern a Provider wrapping a Provider."""

from keel.gateway.router import Gateway, Route

__all__ = ["Gateway", "Route"]

"""Cost: price tables and what calls cost."""

from keel.cost.prices import Price, PriceTable

__all__ = ["Price", "PriceTable"]

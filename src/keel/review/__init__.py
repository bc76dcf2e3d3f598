"""Human review: answers routed to a person, held or served, whose decisions become feedback and eval cases."""

from keel.review.items import item_json
from keel.review.queue import ReviewQueue

__all__ = ["ReviewQueue", "item_json"]

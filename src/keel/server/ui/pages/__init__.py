"""One module per dashboard page: each exposes ``routes(ui)`` and adds itself to ``PAGES``."""

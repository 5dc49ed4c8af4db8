"""A task module that exists but cannot be imported: its pool's workers cannot start."""

raise ImportError("tests.apps.broken_import cannot be imported, on purpose")

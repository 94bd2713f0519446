"""A module that raises while it is imported (registry error-message test)."""

raise RuntimeError("boom: this module is broken on purpose")

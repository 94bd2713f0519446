"""A module whose own import of a missing package fails (registry error-message test)."""

import claire_no_such_dependency_xyz  # noqa: F401

"""`claire papertest`: the unattended paper test (plan, supervisor, worker, status)."""

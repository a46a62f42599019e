"""Session state: the slot-first local pool (and, later, the session store)."""

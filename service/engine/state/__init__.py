"""Session state: the slot-stable pool, its host and device stores, and the state side of a batch."""

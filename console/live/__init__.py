"""The fleet's live state and the poller (in-process or in a process of its own) that keeps it current."""

"""The site service: one process per site that polls, runs actions and serves clients.

Engine layer: nothing here imports screens/ or the command line.
"""

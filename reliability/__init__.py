"""Reliability checks of the connector against the sandbox: faults, crashes, soak, load.

Each check has a command, and a shorter version in ``tests/reliability``::

    python -m reliability faults --seeds 30   # every fault kind, then mixed
    python -m reliability crash --kills 20    # SIGKILL a 7-day backfill
    python -m reliability soak                # a simulated day of live traffic
    python -m reliability load                # 4 windows, a query cap, a budget

Every check ends by comparing the destination with the sandbox's rows, exactly.
"""

"""Acting on the fleet: plans, the runner, reimage, operator locks, the journal and jobs."""

-- What an admin asked of a run's canary: `promote` (past a `pause: {}`)
-- or `abort`; the run's deploy step reads and clears it.
ALTER TABLE runs ADD COLUMN rollout_command TEXT;

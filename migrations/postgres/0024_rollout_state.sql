-- A canary's progress (JSON: phase, step, weight, checks), written by the
-- run's deploy step for its page.
ALTER TABLE runs ADD COLUMN rollout_state TEXT;

-- Each start of a run: which replica ran it, from which step, and — when
-- it ended without ending the run (its replica died, lost the database or
-- restarted) — why. A run taken over resumes as its next attempt.
CREATE TABLE run_attempts (
    run_id      BIGINT  NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt     BIGINT  NOT NULL,
    runner_id   TEXT    NOT NULL,
    -- The position of the first step this attempt ran.
    from_step   BIGINT  NOT NULL DEFAULT 0,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    interrupted TEXT,
    PRIMARY KEY (run_id, attempt)
);
-- The attempt that last started the step: a replica that lost its run
-- writes nothing over the attempt that took it over.
ALTER TABLE steps ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
-- The run deploys to the `local` target: with several replicas, only
-- `runner.local_replica` claims it (the processes live on its machine).
ALTER TABLE runs ADD COLUMN local_target BIGINT NOT NULL DEFAULT 0;

-- The release ledger and pins. Every deployment of a fixed environment
-- gets an entry from the moment it starts deploying, with its run, the
-- commit served before, and its rollback lineage; pins keep an environment
-- on a release until an admin promotes again (the pipeline repo holds the
-- same pin as apps/<app>/pins/<env>.yaml).

ALTER TABLE releases ADD COLUMN run_id BIGINT REFERENCES runs(id) ON DELETE SET NULL;
-- release or rollback.
ALTER TABLE releases ADD COLUMN kind TEXT NOT NULL DEFAULT 'release';
ALTER TABLE releases ADD COLUMN previous_version TEXT;
ALTER TABLE releases ADD COLUMN reason TEXT;
-- The entry a rollback replaced, and the one it went back to.
ALTER TABLE releases ADD COLUMN rollback_of BIGINT REFERENCES releases(id);
ALTER TABLE releases ADD COLUMN rollback_to BIGINT REFERENCES releases(id);
ALTER TABLE releases ADD COLUMN finished_at BIGINT;
-- Since when every target has been healthy without a break (the soak).
ALTER TABLE releases ADD COLUMN healthy_since BIGINT;
-- Who marked it stable: `gantry` after the soak, or an admin.
ALTER TABLE releases ADD COLUMN stable_by TEXT;
CREATE INDEX releases_by_environment ON releases (environment_id, id DESC);
CREATE INDEX releases_by_state ON releases (state);
CREATE UNIQUE INDEX releases_by_deployment ON releases (deployment_id);
CREATE INDEX deployment_targets_by_deployment ON deployment_targets (deployment_id);

-- Rollback runs: the release they go back to, who asked and why.
ALTER TABLE runs ADD COLUMN rollback_to BIGINT REFERENCES releases(id);
ALTER TABLE runs ADD COLUMN requested_by TEXT;
ALTER TABLE runs ADD COLUMN reason TEXT;

CREATE TABLE environment_pins (
    environment_id  BIGINT  PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    release_id      BIGINT  REFERENCES releases(id),
    -- The app commit the environment stays on.
    version         TEXT    NOT NULL,
    pinned_by       TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    -- The pipeline-repo commit that wrote the pin file; NULL while Git
    -- does not have it (git_error says why).
    pin_commit      TEXT,
    git_error       TEXT,
    created_at      BIGINT  NOT NULL
);

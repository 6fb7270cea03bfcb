-- The GitOps flow: pipeline-repo revisions, branch heads, per-app trigger
-- tokens, the run queue's bookkeeping, environment locks and local-target
-- processes. Keep in step with ../sqlite/0002_flow.sql.

-- Every pipeline-repo commit Gantry read, and what came of it.
CREATE TABLE config_revisions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_sha    TEXT    NOT NULL,
    -- applied (every app valid), partial (some apps refused) or rejected.
    state           TEXT    NOT NULL,
    -- JSON array of {file, line, column, field, message}.
    issues          TEXT    NOT NULL DEFAULT '[]',
    created_at      BIGINT  NOT NULL
);
CREATE INDEX config_revisions_by_time ON config_revisions (created_at DESC, id DESC);

-- Apps removed from the pipeline repo are kept (history) but retired.
ALTER TABLE apps ADD COLUMN removed_at BIGINT;
-- SHA-256 of the app's trigger-endpoint token (hex); NULL = none issued.
ALTER TABLE apps ADD COLUMN hook_token_hash TEXT;

-- The last head Gantry saw for each branch of each app repo.
CREATE TABLE branch_heads (
    app_id          BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    branch          TEXT    NOT NULL,
    commit_sha      TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (app_id, branch)
);

-- What a run's commit is, for people: message and author.
ALTER TABLE runs ADD COLUMN commit_message TEXT;
ALTER TABLE runs ADD COLUMN commit_author TEXT;
-- Set when someone (or a newer push) asks a running run to stop.
ALTER TABLE runs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
-- The instance running it and its last sign of life.
ALTER TABLE runs ADD COLUMN runner_id TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_at BIGINT;
-- How many times the run was started (restarts resume from the top).
ALTER TABLE runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;

ALTER TABLE environments ADD COLUMN commit_message TEXT;
ALTER TABLE environments ADD COLUMN commit_author TEXT;
-- The run holding the environment's deploy lock (one deploy at a time).
ALTER TABLE environments ADD COLUMN locked_by_run BIGINT;
-- The deployment serving now.
ALTER TABLE environments ADD COLUMN deployment_id BIGINT;
ALTER TABLE environments ADD COLUMN state_detail TEXT;
-- Preview environments expire this long after their last deploy.
ALTER TABLE environments ADD COLUMN ttl_seconds BIGINT;
CREATE INDEX environments_by_branch ON environments (app_id, branch);

ALTER TABLE steps ADD COLUMN error TEXT;

-- Processes of the local target: one per live environment.
CREATE TABLE local_processes (
    environment_id  BIGINT  PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    deployment_id   BIGINT  NOT NULL REFERENCES deployments(id),
    pid             BIGINT,
    port            BIGINT  NOT NULL,
    workdir         TEXT    NOT NULL,
    started_at      BIGINT  NOT NULL
);

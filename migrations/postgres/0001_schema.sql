-- Gantry's schema: one table per product concept (DESIGN.md §4).
-- Timestamps are BIGINT milliseconds since the Unix epoch, UTC, in both
-- backends. States are TEXT holding the stable names from `app::dto`.
-- Keep this file and ../sqlite/0001_schema.sql in step; never edit an
-- applied migration, add a new one.

CREATE TABLE apps (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    source_url      TEXT    NOT NULL,
    -- The validated app.yaml + pipeline.yaml, as JSON, and the pipeline-repo
    -- commit they were read from.
    config          TEXT    NOT NULL,
    pipeline_sha    TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE environments (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    -- The stack entry it comes from: preview, staging, production, ...
    stack_entry     TEXT    NOT NULL,
    branch          TEXT,
    state           TEXT    NOT NULL,
    url             TEXT,
    namespace       TEXT,
    commit_sha      TEXT,
    pipeline_sha    TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    destroyed_at    BIGINT,
    UNIQUE (app_id, name)
);

CREATE TABLE change_requests (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- `native` for requests opened in Gantry, else the forge: github, gitlab, gitea.
    origin          TEXT    NOT NULL,
    forge_number    BIGINT,
    title           TEXT    NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    source_branch   TEXT    NOT NULL,
    target_branch   TEXT    NOT NULL,
    head_sha        TEXT,
    author          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    state_detail    TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    merged_at       BIGINT
);
CREATE INDEX change_requests_by_app ON change_requests (app_id, state);

CREATE TABLE runs (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id              BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    environment_id      BIGINT  NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    change_request_id   BIGINT  REFERENCES change_requests(id) ON DELETE SET NULL,
    branch              TEXT    NOT NULL,
    commit_sha          TEXT    NOT NULL,
    pipeline_sha        TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    -- What started it: push, hook, poll, change_request, retry, ...
    trigger             TEXT    NOT NULL,
    superseded_by       BIGINT  REFERENCES runs(id),
    error               TEXT,
    created_at          BIGINT  NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT
);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_environment ON runs (environment_id, created_at DESC);
CREATE INDEX runs_by_state ON runs (state);

CREATE TABLE steps (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          BIGINT  NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position        BIGINT  NOT NULL,
    name            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    exit_code       BIGINT,
    log_bytes       BIGINT  NOT NULL DEFAULT 0,
    log_truncated   BIGINT  NOT NULL DEFAULT 0,
    started_at      BIGINT,
    finished_at     BIGINT,
    UNIQUE (run_id, position)
);

CREATE TABLE log_chunks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step_id         BIGINT  NOT NULL REFERENCES steps(id) ON DELETE CASCADE,
    seq             BIGINT  NOT NULL,
    content         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    UNIQUE (step_id, seq)
);

CREATE TABLE test_reports (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step_id         BIGINT  NOT NULL REFERENCES steps(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    passed          BIGINT  NOT NULL,
    failed          BIGINT  NOT NULL,
    skipped         BIGINT  NOT NULL,
    -- JSON array of {suite, case, message}.
    failures        TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);

CREATE TABLE clusters (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    server_url          TEXT,
    -- Credentials (kubeconfig, token, CA), encrypted; see `secrets`.
    credentials_nonce   BYTEA,
    credentials         BYTEA,
    key_id              TEXT,
    state               TEXT    NOT NULL,
    server_version      TEXT,
    last_checked_at     BIGINT,
    last_error          TEXT,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);

CREATE TABLE deployments (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  BIGINT  NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    run_id          BIGINT  REFERENCES runs(id) ON DELETE SET NULL,
    -- deploy, rollback or redeploy.
    kind            TEXT    NOT NULL,
    rollback_of     BIGINT  REFERENCES deployments(id),
    commit_sha      TEXT    NOT NULL,
    pipeline_sha    TEXT    NOT NULL,
    image           TEXT,
    state           TEXT    NOT NULL,
    -- The exact rendered manifests, as applied (secret values included only
    -- in encrypted form; see the deploy module), and their digest.
    manifests       TEXT    NOT NULL,
    manifests_digest TEXT   NOT NULL,
    created_by      TEXT,
    reason          TEXT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX deployments_by_environment ON deployments (environment_id, created_at DESC);

-- One row per target of a deployment: each cluster (or `local`) and its outcome.
CREATE TABLE deployment_targets (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id   BIGINT  NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    target          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    detail          TEXT,
    started_at      BIGINT,
    finished_at     BIGINT,
    UNIQUE (deployment_id, target)
);

CREATE TABLE releases (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    environment_id  BIGINT  NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    deployment_id   BIGINT  NOT NULL REFERENCES deployments(id),
    version         TEXT    NOT NULL,
    pipeline_sha    TEXT    NOT NULL,
    image           TEXT,
    state           TEXT    NOT NULL,
    label           TEXT,
    -- JSON array of commits since the previous release.
    changelog       TEXT    NOT NULL DEFAULT '[]',
    created_by      TEXT,
    created_at      BIGINT  NOT NULL,
    stable_at       BIGINT
);
CREATE INDEX releases_by_app ON releases (app_id, environment_id, created_at DESC);

CREATE TABLE users (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The OIDC `iss` + `sub`; stable across e-mail changes.
    issuer          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    email           TEXT,
    display_name    TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    last_login_at   BIGINT,
    UNIQUE (issuer, subject)
);

-- A role, optionally scoped to one app (NULL app_id = every app).
CREATE TABLE role_bindings (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role            TEXT    NOT NULL,
    app_id          BIGINT  REFERENCES apps(id) ON DELETE CASCADE,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX role_bindings_by_user ON role_bindings (user_id);

CREATE TABLE approvals (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id      BIGINT  NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    run_id              BIGINT  REFERENCES runs(id) ON DELETE CASCADE,
    change_request_id   BIGINT  REFERENCES change_requests(id) ON DELETE CASCADE,
    user_id             BIGINT  NOT NULL REFERENCES users(id),
    -- approved, rejected or override.
    decision            TEXT    NOT NULL,
    comment             TEXT,
    -- When the approver last authenticated (fresh sign-in for production).
    auth_time           BIGINT,
    created_at          BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash      TEXT    NOT NULL UNIQUE,
    role            TEXT    NOT NULL,
    app_id          BIGINT  REFERENCES apps(id) ON DELETE CASCADE,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    revoked_at      BIGINT,
    last_used_at    BIGINT
);

-- The tower-sessions store's table (tower-sessions-sqlx-store layout).
CREATE TABLE sessions (
    id              TEXT    PRIMARY KEY NOT NULL,
    data            BYTEA   NOT NULL,
    expiry_date     TIMESTAMPTZ NOT NULL
);

CREATE TABLE secrets (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL,
    -- NULL for secrets every app may reference.
    app_id          BIGINT  REFERENCES apps(id) ON DELETE CASCADE,
    nonce           BYTEA   NOT NULL,
    ciphertext      BYTEA   NOT NULL,
    key_id          TEXT    NOT NULL,
    created_by      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE UNIQUE INDEX secrets_by_name ON secrets (name, COALESCE(app_id, 0));

CREATE TABLE notification_channels (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    -- dingtalk, slack, email, wecom or webhook.
    kind            TEXT    NOT NULL,
    -- Non-secret settings as JSON; secrets are referenced by name.
    settings        TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE notification_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      BIGINT  NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,
    -- What it is about, e.g. run:42 or release:7; one message per subject+event.
    subject         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (channel_id, event, subject)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_attempt_at);

CREATE TABLE audit_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT  NOT NULL,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    reason          TEXT,
    source_ip       TEXT,
    -- JSON with whatever else the action needs to be understood later.
    detail          TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (at DESC, id DESC);

-- The audit log is append-only: the database itself refuses edits.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Every incoming event (git poll, trigger hook, forge webhook), stored once
-- before it is processed.
CREATE TABLE event_inbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          TEXT    NOT NULL,
    -- The forge's delivery id, or ref+sha for git changes.
    delivery_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    processed_at    BIGINT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    error           TEXT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX event_inbox_pending ON event_inbox (processed_at, id);

-- Sign-in, roles, change requests and approval policy.

-- Sessions are stored by Gantry's own tower-sessions store (BIGINT expiry in
-- both backends); the first schema's table was never used.
DROP TABLE sessions;
CREATE TABLE user_sessions (
    id              TEXT    PRIMARY KEY NOT NULL,
    data            BLOB   NOT NULL,
    expires_at      BIGINT  NOT NULL
);
CREATE INDEX user_sessions_by_expiry ON user_sessions (expires_at);

-- Where a role binding came from: oidc (recomputed at each sign-in), dev
-- (the demo's dev login) or admin (granted by hand).
ALTER TABLE role_bindings ADD COLUMN source TEXT NOT NULL DEFAULT 'admin';

-- A change request's author (a Gantry user), the environment its target
-- branch deploys to, and the commit its merge created.
ALTER TABLE change_requests ADD COLUMN author_user_id BIGINT REFERENCES users(id);
ALTER TABLE change_requests ADD COLUMN merge_sha TEXT;
ALTER TABLE change_requests ADD COLUMN merged_by TEXT;

-- An admin override's mandatory reason.
ALTER TABLE approvals ADD COLUMN override_reason TEXT;
CREATE INDEX approvals_by_change_request ON approvals (change_request_id);
CREATE INDEX approvals_by_run ON approvals (run_id);

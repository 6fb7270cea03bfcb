-- What an approval covers (README, "What an approval covers"): whether a
-- protected environment may deploy a commit is decided by content. Every
-- commit between what the environment deployed and the commit to deploy
-- must be covered: by a deployment there, an approved or overridden run, a
-- change request's approval (its own commits, as its approvers saw them
-- against the target), or one of these grants.
--   merge        Gantry's own merge of an approved request, made only onto
--                a target whose history was covered: covers `tip_sha` and
--                all of its history.
--   forge_merge  a forge merge the policy counts (`approval.forge_merge`,
--                by a forge user mapped to an approver): covers what the
--                merge commit adds to its first parent.
--   forge_ff     a forge's fast-forward the policy counts: covers that
--                commit alone (its parents are its pusher's choice).
--   push         a forge push the policy counts (`approval.forge_push`):
--                covers what `tip_sha` adds to `base_sha`.
CREATE TABLE coverage_grants (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id              BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    branch              TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    tip_sha             TEXT    NOT NULL,
    base_sha            TEXT,
    change_request_id   BIGINT  REFERENCES change_requests(id) ON DELETE SET NULL,
    user_id             BIGINT  REFERENCES users(id),
    created_at          BIGINT  NOT NULL
);
CREATE INDEX coverage_grants_by_branch ON coverage_grants (app_id, branch);

-- The target branch's head an approver of a change request saw: the
-- approval covers the request's own commits (what its head adds to that).
ALTER TABLE approvals ADD COLUMN base_sha TEXT;

-- How a request was merged: `gantry` (Gantry merged it after checking its
-- target), `forge` (a forge merge the policy counts), `forge-uncounted`
-- (merged on the forge, not an approval), `contained` (the target already
-- had it; nothing was merged).
ALTER TABLE change_requests ADD COLUMN merged_via TEXT;
-- Merges recorded before: `legacy` (a forge's echo could have written a
-- request's head there); only Gantry's own merges skip a freeze.
UPDATE change_requests SET merged_via = 'legacy' WHERE merge_sha IS NOT NULL;

-- The forge account a person signs in as (from the claim
-- `auth.forge_login_claim` names): how forge authors, mergers and pushers
-- become Gantry identities. Never taken from commit metadata.
ALTER TABLE users ADD COLUMN forge_login TEXT;
CREATE INDEX users_by_forge_login ON users (forge_login);

-- The commits a held run's approval would cover that nothing covers yet
-- (JSON: {"total": n, "commits": [{sha, summary, author, ...}]}), shown on
-- the approval screens; and who pushed its commit, where a forge said.
ALTER TABLE runs ADD COLUMN uncovered TEXT;
ALTER TABLE runs ADD COLUMN pushed_by_user_id BIGINT REFERENCES users(id);

-- Who pushed a branch head, as the forge's signed push event says.
CREATE TABLE forge_pushes (
    app_id      BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    branch      TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    before_sha  TEXT,
    forge       TEXT    NOT NULL,
    login       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (app_id, branch, sha)
);

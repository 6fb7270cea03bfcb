-- The home page's "needs attention" strip reads the newest failed runs
-- (db::runs::failed_and_latest).
CREATE INDEX runs_by_state_and_time ON runs (state, created_at DESC);
-- "Waiting for you" reads the open change requests of every app
-- (db::approvals::undecided).
CREATE INDEX change_requests_by_state ON change_requests (state);

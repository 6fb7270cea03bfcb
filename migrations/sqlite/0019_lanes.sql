-- The home page's "needs attention" strip reads the newest failed runs
-- (db::runs::failed_and_latest).
CREATE INDEX runs_by_state_and_time ON runs (state, created_at DESC);

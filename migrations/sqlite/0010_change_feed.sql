-- The dashboard's change feed reads these maxima once a second.
CREATE INDEX runs_by_started ON runs (started_at);
CREATE INDEX runs_by_finished ON runs (finished_at);
CREATE INDEX environments_by_updated ON environments (updated_at);
CREATE INDEX change_requests_by_updated ON change_requests (updated_at);

-- Change requests: approvals belong to the commit they approved (a new
-- push starts the approvals over), and runs find their request quickly.
ALTER TABLE approvals ADD COLUMN commit_sha TEXT;
CREATE INDEX change_requests_by_source ON change_requests (app_id, source_branch, state);
CREATE INDEX change_requests_by_merge ON change_requests (app_id, target_branch, merge_sha);

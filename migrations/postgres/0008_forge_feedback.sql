-- The one comment Gantry keeps on a forge change request, edited in place.
ALTER TABLE change_requests ADD COLUMN forge_comment_id TEXT;
CREATE INDEX change_requests_by_forge ON change_requests (app_id, origin, forge_number);

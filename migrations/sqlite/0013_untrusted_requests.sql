-- Pull/merge requests from forks are untrusted: their change request names
-- the fork, their runs are marked (held until an admin allows them, built
-- without secrets), and a forge delivery replayed under a new delivery id
-- is recognised by the digest of its signed body.
ALTER TABLE change_requests ADD COLUMN fork_of TEXT;
ALTER TABLE runs ADD COLUMN from_fork TEXT;
ALTER TABLE event_inbox ADD COLUMN body_digest TEXT;
-- A step an admin let onto the host's network says so on the run page.
ALTER TABLE steps ADD COLUMN network TEXT;
CREATE UNIQUE INDEX event_inbox_by_digest ON event_inbox (source, body_digest);

-- Preview share links: signed and expiring (the token itself is never
-- stored, only its link id is signed into it), revocable, each one audited.
CREATE TABLE share_links (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    change_request_id   BIGINT  NOT NULL REFERENCES change_requests(id) ON DELETE CASCADE,
    created_by          TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    revoked_at          BIGINT
);
CREATE INDEX share_links_by_request ON share_links (change_request_id);

-- What testers say about a change request's preview: through a share link
-- (share_link_id) or signed in.
CREATE TABLE tester_feedback (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    change_request_id   BIGINT  NOT NULL REFERENCES change_requests(id) ON DELETE CASCADE,
    share_link_id       BIGINT  REFERENCES share_links(id) ON DELETE SET NULL,
    author              TEXT    NOT NULL,
    -- works, broken or note.
    verdict             TEXT    NOT NULL,
    comment             TEXT    NOT NULL,
    -- The head the tester looked at.
    commit_sha          TEXT,
    created_at          BIGINT  NOT NULL
);
CREATE INDEX tester_feedback_by_request ON tester_feedback (change_request_id, id);

-- The highest cluster id registered when a pipeline commit was read: a
-- commit refused for naming an unknown cluster is read again once a
-- cluster with a higher id exists. Ids, not times: replicas' clocks may
-- disagree, ids do not.
ALTER TABLE config_revisions ADD COLUMN clusters_seen BIGINT NOT NULL DEFAULT 0;

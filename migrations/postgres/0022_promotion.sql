-- Build once, promote. An admin may reject an artifact (or roll back its
-- release as faulty): it is never promoted again without an override.
ALTER TABLE artifacts ADD COLUMN rejected_at BIGINT;
ALTER TABLE artifacts ADD COLUMN rejected_by TEXT;
ALTER TABLE artifacts ADD COLUMN rejected_reason TEXT;
-- When a release stopped serving (superseded, rolled back): with
-- healthy_since, how long its artifact was verified live and healthy.
ALTER TABLE releases ADD COLUMN healthy_until BIGINT;
-- A promoted run: the upstream run whose build it deploys.
ALTER TABLE runs ADD COLUMN promoted_from BIGINT REFERENCES runs(id) ON DELETE SET NULL;
CREATE INDEX runs_by_artifact ON runs (artifact_id);

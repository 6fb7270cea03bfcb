-- Build once, promote. An artifact is keyed by the app's source tree and
-- its pipeline folder's files (pins aside): another app's change or a pin
-- in the pipeline repo keeps it one artifact.
ALTER TABLE artifacts ADD COLUMN pipeline_tree TEXT;
CREATE INDEX artifacts_by_build ON artifacts (app_id, source_tree, pipeline_tree);
-- An admin may reject an artifact (or roll back its
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

-- Kubernetes targets: how a cluster was registered, the exact manifests of
-- each deployment (sealed, since they may hold secret values), the objects
-- each target received (for prune), and drift.
ALTER TABLE clusters ADD COLUMN kind TEXT NOT NULL DEFAULT 'token';
ALTER TABLE clusters ADD COLUMN context TEXT;

ALTER TABLE deployments ADD COLUMN manifests_sealed BYTEA;
ALTER TABLE deployments ADD COLUMN manifests_nonce BYTEA;
ALTER TABLE deployments ADD COLUMN manifests_key_id TEXT;

-- JSON array of {apiVersion, kind, namespace, name} applied to the target.
ALTER TABLE deployment_targets ADD COLUMN objects TEXT;

-- What differs between the live objects and the last applied ones (NULL =
-- in sync), and when that was last checked.
ALTER TABLE environments ADD COLUMN drift TEXT;
ALTER TABLE environments ADD COLUMN drift_checked_at BIGINT;

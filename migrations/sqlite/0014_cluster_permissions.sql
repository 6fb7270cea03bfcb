-- What the cluster's credentials may not do of what Gantry needs, as the
-- last check asked the cluster (SelfSubjectAccessReview): a JSON array of
-- sentences, NULL when the check could not ask.
ALTER TABLE clusters ADD COLUMN missing_permissions TEXT;
-- The check reads each environment's latest deployment to a cluster.
CREATE INDEX deployment_targets_by_target ON deployment_targets (target, deployment_id);

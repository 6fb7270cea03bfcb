-- Why the last fetch of an app's repo failed (NULL once it succeeds), so
-- the dashboard and the API can say it.
ALTER TABLE apps ADD COLUMN fetch_error TEXT;

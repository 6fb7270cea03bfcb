//! A run's workspace: `<data>/work/run-<id>-<attempt>/` with the app
//! checked out in `app/`, what steps may see of the pipeline repo's app
//! folder in `pipeline/` (its scripts and `pipeline.yaml`), the admins'
//! manifests in `manifests/` (for Gantry's deploy step only: no sandbox is
//! given it) and a private `home/`. Removed when the run ends; a later attempt of the run on
//! the same replica carries on in it (`take_from`).

use std::path::{Path, PathBuf};

use crate::sandbox::{self, Mount};

/// Removes a file, a link or a folder at `path`, if there is one (never
/// what a link points at).
pub async fn remove_any(path: &Path) {
    match tokio::fs::symlink_metadata(path).await {
        Ok(metadata) if metadata.is_dir() => {
            let _ = tokio::fs::remove_dir_all(path).await;
        }
        Ok(_) => {
            let _ = tokio::fs::remove_file(path).await;
        }
        Err(_) => {}
    }
}

/// The outputs file's name in a step's home.
pub const OUTPUTS_FILE: &str = ".gantry-outputs";

pub struct Workspace {
    pub root: PathBuf,
    /// The run's own uid (Gantry runs as root), held while the run runs:
    /// its steps run as it and own the checkout.
    pub user: Option<crate::sandbox::users::UserLease>,
}

impl Workspace {
    pub fn new(work_dir: &Path, run_id: i64, attempt: i64) -> Workspace {
        Workspace {
            root: work_dir.join(format!("run-{run_id}-{attempt}")),
            user: None,
        }
    }

    /// The uid and gid the run's sandboxes run as, if it has its own.
    pub fn user_ids(&self) -> Option<(u32, u32)> {
        self.user
            .as_ref()
            .map(crate::sandbox::users::UserLease::ids)
    }

    pub fn app(&self) -> PathBuf {
        self.root.join("app")
    }

    pub fn pipeline(&self) -> PathBuf {
        self.root.join("pipeline")
    }

    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// Where a step leaves what it declares (`$GANTRY_OUTPUTS`): in its
    /// home, outside the checkout; read and removed after each step.
    pub fn outputs(&self) -> PathBuf {
        self.home().join(OUTPUTS_FILE)
    }

    /// The app's `deploy/` folder: rendered by Gantry, never mounted.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// The checkout, where steps run: `/workspace` inside the sandbox.
    pub fn app_mount(&self) -> Mount {
        Mount::writable(self.app(), sandbox::WORKSPACE)
    }

    /// The app's pipeline folder, read-only at `/pipeline`.
    pub fn pipeline_mount(&self) -> Mount {
        Mount::read_only(self.pipeline(), sandbox::PIPELINE)
    }

    pub fn home_mount(&self) -> Mount {
        Mount::writable(self.home(), sandbox::HOME)
    }

    /// What a step's sandbox is given: the checkout, its home and (when
    /// there is one) the app's pipeline folder — nothing of other runs.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut mounts = vec![self.app_mount(), self.home_mount()];
        if self.pipeline().is_dir() {
            mounts.push(self.pipeline_mount());
        }
        mounts
    }

    /// A path a step named (a report), if it stays inside the checkout
    /// once symlinks are resolved.
    pub fn inside_app(&self, relative: &str) -> Option<PathBuf> {
        let base = self.app().canonicalize().ok()?;
        let path = base.join(relative).canonicalize().ok()?;
        path.starts_with(&base).then_some(path)
    }

    /// Moves an earlier attempt's workspace here (this replica ran it and
    /// restarted): the steps it finished are not run again.
    pub async fn take_from(&self, earlier: &Workspace) -> std::io::Result<()> {
        self.remove().await;
        tokio::fs::rename(&earlier.root, &self.root).await
    }

    pub async fn remove(&self) {
        if let Err(error) = tokio::fs::remove_dir_all(&self.root).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %self.root.display(), "cannot remove a run workspace");
        }
    }
}

//! `gantry demo`: Gantry with its embedded defaults — SQLite in the data
//! directory, the local target, no cluster. For now it serves the dashboard;
//! the sample app and its pipeline repo join once the flow exists.

use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!("demo: open http://{} in a browser", config.bind);
    crate::serve::serve(config).await
}

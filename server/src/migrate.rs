//! `gantry migrate`: bring the database schema up to date and exit.

use crate::config::Config;
use crate::db::Db;
use crate::storage::DataDir;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let _data_dir = DataDir::open(&config.data_dir)?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    db.check_ready().await?;
    tracing::info!(
        database = db.backend().name(),
        "database schema is up to date"
    );
    db.close().await;
    Ok(())
}

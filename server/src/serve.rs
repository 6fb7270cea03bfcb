//! Running the server: open the data directory, bind the port, connect and
//! migrate, serve until SIGINT/SIGTERM, then finish in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::AppState;
use crate::http::build_app;
use crate::state::App;
use crate::storage::DataDir;

/// Everything `gantry serve` does. Returns when shut down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(config, |_| {}).await
}

/// `serve`, calling `started` once the server is up (the demo uses it).
pub async fn serve_with(config: Config, started: impl FnOnce(Arc<App>)) -> anyhow::Result<()> {
    let data_dir = DataDir::open(&config.data_dir)?;
    // SQLite is one process's, wherever the file lives; held until we return.
    let _database_lock = match &config.database {
        crate::config::DatabaseTarget::Sqlite(path) => {
            Some(crate::storage::DatabaseLock::acquire(path)?)
        }
        _ => None,
    };
    // Bind before touching the database: a port in use fails in
    // milliseconds and changes nothing.
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let address = listener.local_addr().context("reading the bound address")?;

    let app = App::start(config).await?;
    if !crate::http::assets::frontend_embedded() {
        tracing::warn!(
            "this binary has no WASM frontend embedded: the dashboard renders but is not interactive; build with ./x build"
        );
    }
    let state = AppState::new(Arc::new(app));
    let background = crate::http::start(&state).await?;
    tracing::info!(
        %address,
        data_dir = %data_dir.path().display(),
        database = state.db.backend().name(),
        "gantry is serving on http://{address}"
    );

    let router = build_app(state.clone());
    started(state.app.clone());
    let stopping = state.app.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // At the signal, not after the HTTP drain (an open live stream can
        // hold that until the process is killed): no more claims, then
        // another replica resumes this one's runs now, not a lease from
        // now (a rolling restart waits for no lease).
        stopping.replica.draining.cancel();
        match crate::jobs::recovery::hand_over(&stopping).await {
            Ok(0) => {}
            Ok(handed) => tracing::info!(handed, "handed running runs over to the other replicas"),
            Err(error) => tracing::warn!(%error, "cannot hand runs over; they are taken over once their lease expires"),
        }
    })
    .await
    .context("serving HTTP")?;

    tracing::info!("shutting down");
    state.stop().await;
    for task in background {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    }
    state.db.close().await;
    drop(data_dir);
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

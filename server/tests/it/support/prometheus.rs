//! A real Prometheus (Debian's `prometheus` package, installed by `./x
//! test`) on a loopback port, scraping an exporter the test runs, whose
//! one gauge — `canary_error_ratio{app="shop"}` — the test sets.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::flow::{MINUTE, wait_for};
use super::process::free_port;

/// The exporter: set its gauge with [`Exporter::set`].
#[derive(Clone)]
pub struct Exporter {
    ratio: Arc<AtomicU64>,
    pub port: u16,
}

impl Exporter {
    pub async fn start(ratio: f64) -> Exporter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let exporter = Exporter {
            ratio: Arc::new(AtomicU64::new(ratio.to_bits())),
            port,
        };
        let shown = exporter.ratio.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let ratio = f64::from_bits(shown.load(Ordering::Relaxed));
                async move {
                    format!(
                        "# TYPE canary_error_ratio gauge\ncanary_error_ratio{{app=\"shop\"}} {ratio}\n"
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        exporter
    }

    pub fn set(&self, ratio: f64) {
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
    }
}

/// Prometheus scraping `exporter` every second; stopped when dropped.
pub struct Prometheus {
    child: Child,
    _data: tempfile::TempDir,
    pub url: String,
}

impl Prometheus {
    pub async fn start(exporter: &Exporter) -> Prometheus {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: canary\n    static_configs: [{{ targets: [\"127.0.0.1:{}\"] }}]\n",
                exporter.port
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package; `./x test` installs it)");
        Prometheus {
            child,
            _data: data,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The gauge's value as Prometheus has it, once it has one.
    pub async fn value(&self) -> Option<f64> {
        let url = format!(
            "{}/api/v1/query?query=max(canary_error_ratio%7Bapp%3D%22shop%22%7D)",
            self.url
        );
        let answer: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Waits until Prometheus has scraped `ratio`.
    pub async fn until_it_reads(&self, ratio: f64) {
        wait_for(&format!("prometheus to read {ratio}"), MINUTE, || async {
            (self.value().await == Some(ratio)).then_some(())
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The network path between one replica and the database, as a TCP relay
//! the test can cut: every connection through it drops at once and new
//! ones are refused, as when a link goes down, until it is restored.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct DatabaseLink {
    port: u16,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DatabaseLink {
    /// A link to the database server at `target`.
    pub async fn to(target: SocketAddr) -> DatabaseLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (up, watching) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*watching.borrow() {
                    drop(client);
                    continue;
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        DatabaseLink { port, up, task }
    }

    /// A link to the server `url` (a PostgreSQL URL) names.
    pub async fn for_url(url: &str) -> DatabaseLink {
        let (_, rest) = url.split_once('@').expect("the URL has a host");
        let (host, _) = rest.split_once('/').expect("the URL names a database");
        let target = tokio::net::lookup_host(host)
            .await
            .expect("the database host")
            .next()
            .expect("an address");
        DatabaseLink::to(target).await
    }

    /// `url` (a PostgreSQL URL) through this link.
    pub fn url(&self, url: &str) -> String {
        let (scheme_and_user, rest) = url.split_once('@').expect("the URL has a host");
        let (_, path) = rest.split_once('/').expect("the URL names a database");
        format!("{scheme_and_user}@127.0.0.1:{}/{path}", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for DatabaseLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

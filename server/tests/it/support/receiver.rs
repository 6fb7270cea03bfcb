//! A local HTTP receiver for tests: records every request (path, query,
//! headers, JSON body) and answers `{"id": 555, "errcode": 0}` — what a
//! chat robot or a forge API says on success — or 500 for paths told to
//! fail.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

/// What the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
pub struct Receiver {
    received: Mutex<Vec<Received>>,
    /// Paths that answer 500 this many more times (`usize::MAX`: always).
    failing: Mutex<Vec<(String, usize)>>,
    /// Paths whose next requests are recorded and never answered.
    holding: Mutex<Vec<(String, usize)>>,
}

impl Receiver {
    pub async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = axum::Router::new()
            .fallback(record)
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (receiver, base)
    }

    pub fn fail(&self, path: &str, times: usize) {
        self.failing.lock().unwrap().push((path.to_string(), times));
    }

    /// The next `times` requests to `path` are recorded and never
    /// answered, as a receiver that hangs.
    pub fn hold(&self, path: &str, times: usize) {
        self.holding.lock().unwrap().push((path.to_string(), times));
    }

    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn record(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    receiver.received.lock().unwrap().push(Received {
        method,
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let held = {
        let mut holding = receiver.holding.lock().unwrap();
        match holding.iter_mut().find(|(p, left)| *p == path && *left > 0) {
            Some((_, left)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    };
    if held {
        std::future::pending::<()>().await;
    }
    let mut failing = receiver.failing.lock().unwrap();
    if let Some((_, left)) = failing.iter_mut().find(|(p, left)| *p == path && *left > 0) {
        if *left != usize::MAX {
            *left -= 1;
        }
        return (StatusCode::INTERNAL_SERVER_ERROR, "try again".into());
    }
    (
        StatusCode::OK,
        r#"{"id":555,"errcode":0,"errmsg":"ok"}"#.into(),
    )
}

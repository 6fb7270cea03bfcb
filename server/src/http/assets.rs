//! Static assets under `/pkg`: the stylesheet (compiled in from `style/`)
//! and the WASM frontend (embedded by `build.rs` when `./x` built it).
//! Served with an ETag and `no-cache`, so browsers revalidate cheaply and
//! never run a stale bundle after an upgrade.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/frontend_assets.rs"));

const STYLESHEET: &str = include_str!("../../../style/gantry.css");

/// True when the binary carries the WASM frontend.
pub fn frontend_embedded() -> bool {
    FRONTEND_ASSETS
        .iter()
        .any(|(name, _)| *name == "gantry_bg.wasm")
}

struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut all = vec![asset("gantry.css", STYLESHEET.as_bytes())];
        all.extend(FRONTEND_ASSETS.iter().map(|(name, body)| asset(name, body)));
        all
    })
}

fn asset(name: &'static str, body: &'static [u8]) -> Asset {
    let content_type = match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(body)))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    Asset {
        name,
        body,
        content_type,
        etag,
    }
}

/// A fast, stable content hash; ETags need change detection, not security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub async fn serve_asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = assets().iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, asset.etag.clone()),
    ];
    if headers.get(header::IF_NONE_MATCH) == Some(&asset.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response()
}

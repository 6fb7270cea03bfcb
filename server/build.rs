//! Embeds the built WASM frontend into the `gantry` binary, so one file is
//! the whole product. `./x build` compiles the frontend first and points
//! `FRONTEND_PKG_DIR` at its output; a plain `cargo build` without it gives a
//! server whose dashboard renders but does not hydrate (it says so in a
//! warning at start-up).

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

const FILES: &[&str] = &["gantry.js", "gantry_bg.wasm"];

fn main() {
    println!("cargo:rerun-if-env-changed=FRONTEND_PKG_DIR");
    // `sqlx::migrate!` embeds the migrations; a new file must rebuild.
    println!("cargo:rerun-if-changed=../migrations");
    let mut code = String::from("pub static FRONTEND_ASSETS: &[(&str, &[u8])] = &[\n");
    if let Some(dir) = env::var_os("FRONTEND_PKG_DIR").map(PathBuf::from) {
        for name in FILES {
            let path = dir.join(name);
            println!("cargo:rerun-if-changed={}", path.display());
            if path.is_file() {
                let _ = writeln!(
                    code,
                    "    ({name:?}, include_bytes!({:?})),",
                    path.display().to_string()
                );
            } else {
                println!(
                    "cargo:warning=FRONTEND_PKG_DIR has no {name}; the dashboard will not hydrate"
                );
            }
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("frontend_assets.rs");
    if let Err(error) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {error}", out.display());
        std::process::exit(1);
    }
}

//! An emulated cluster as a process, for the browser tests: serves on a
//! free loopback port, prints one JSON line (`{"url": …, "kubeconfig": …}`)
//! and runs until killed. Its containers print one line when they start,
//! as a real container's log would begin.

// A test tool: its one line of output is its interface.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use kube_emulator::{Emulator, Options, RolloutMode};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let emulator = Emulator::start(Options {
        rollout: RolloutMode::After(Duration::from_millis(100)),
        ..Options::default()
    })
    .await?;
    let said =
        serde_json::json!({ "url": emulator.url(), "kubeconfig": emulator.kubeconfig("emulated") });
    println!("{said}");
    let store = emulator.store().clone();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (key, pod) in store.objects_of("", "pods") {
            for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
                let name = container["name"].as_str().unwrap_or_default();
                if store.log(&key.namespace, &key.name, name).is_empty() {
                    let image = container["image"].as_str().unwrap_or("?");
                    store.write_log(
                        &key.namespace,
                        &key.name,
                        name,
                        &format!("{name} started from {image}\nlistening on :8080\n"),
                    );
                }
            }
        }
    }
}

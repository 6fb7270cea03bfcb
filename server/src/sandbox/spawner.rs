//! One thread that starts every sandbox. bubblewrap's `--die-with-parent`
//! uses the kernel's parent-death signal, which fires when the *thread*
//! that forked the process ends, not the process. Spawning from a runtime
//! worker (which tokio may retire) could kill a live app at a random
//! moment; this thread lives exactly as long as the [`super::Sandbox`], so
//! its sandboxes end with it — and with Gantry, however Gantry ends.

use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

type Job = (Command, oneshot::Sender<std::io::Result<Child>>);

#[derive(Debug)]
pub struct Spawner {
    jobs: mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the thread; call from within the runtime that will wait on
    /// the children.
    pub fn new() -> std::io::Result<Spawner> {
        let runtime = Handle::current();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("gantry-sandbox-spawner".into())
            .spawn(move || {
                // Children are registered with the runtime's process driver.
                let _entered = runtime.enter();
                while let Ok((mut command, answer)) = queue.recv() {
                    let _ = answer.send(command.spawn());
                }
            })?;
        Ok(Spawner { jobs })
    }

    pub async fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (answer, result) = oneshot::channel();
        self.jobs
            .send((command, answer))
            .map_err(|_| std::io::Error::other("the sandbox spawner has stopped"))?;
        result
            .await
            .map_err(|_| std::io::Error::other("the sandbox spawner has stopped"))?
    }
}

//! `gantry-sandbox`: the first process of every sandbox (see
//! `gantry::sandbox::init`). Gantry starts it through bubblewrap; it is not
//! meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(gantry::sandbox::init::main(&args));
}

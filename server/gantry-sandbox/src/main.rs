//! `gantry-sandbox`: the first process of every sandbox (see the library).
//! Gantry starts it through bubblewrap; it is not meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(gantry_sandbox::main(&args));
}

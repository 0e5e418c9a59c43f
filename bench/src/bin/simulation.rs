//! The general agent-simulation harness: `--scenario` picks one of the built-in scenarios.

use bench::sim;

fn main() -> std::process::ExitCode {
    sim::main_for(None)
}

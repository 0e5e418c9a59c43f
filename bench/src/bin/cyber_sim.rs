//! The `cyber_sim` scenario on the simulation harness (see bench/src/sim).

use bench::sim;

fn main() -> std::process::ExitCode {
    sim::main_for(Some("cyber_sim"))
}

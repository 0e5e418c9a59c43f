//! Load tools for allman. Every binary drives a live server over real MCP (HTTP/1.1
//! keep-alive, `initialize` then `tools/call`) from plain threads, one connection each.

pub mod accounting;
pub mod args;
pub mod client;
pub mod histogram;
pub mod http;
pub mod progress;
pub mod report;
pub mod server;
pub mod sim;
pub mod workers;

/// A short id that keeps the agent names of separate runs against one server apart.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
    format!("{:x}", mixed & 0xff_ffff_ffff)
}

/// splitmix64: a small seeded generator, so runs and simulations are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

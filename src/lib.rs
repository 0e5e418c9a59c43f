//! allman's server as a library: the binary (`src/main.rs`) is start-up and shutdown on top of
//! these modules, and the fuzz targets (`fuzz/`) drive the decoders directly.
//!
//! Data flows one way: socket → [`http`] → [`mcp`] → [`tools`] → shards (the `shards` crate)
//! → reply; [`search`] and [`audit`] are helper threads fed through [`feed`]; [`storage`]
//! recovers the shards' logs at start and hands each shard its state. [`ui`] serves the
//! read-only web view beside `/mcp`, through the same shard requests.

/// This build's version (from Cargo.toml): `allman --version`, the start-up log and the
/// `allman_build_info` gauge.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod audit;
pub mod clock;
pub mod config;
pub mod cores;
pub mod executors;
pub mod feed;
#[doc(hidden)]
pub mod fuzzing;
pub mod hook;
pub mod http;
pub mod ids;
pub mod json;
pub mod lifecycle;
pub mod mcp;
pub mod metrics;
pub mod platform;
pub mod routes;
pub mod search;
pub mod storage;
pub mod tools;
pub mod ui;
pub mod wake;

//! Running a phase: `concurrency` threads, each with its own MCP connection, pulling job
//! indices from a shared counter until `jobs` are done.

use crate::client::{CallError, McpClient, Stats};
use crate::http::Url;
use crate::progress::Progress;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct PhaseResult<T> {
    pub name: String,
    pub elapsed: Duration,
    pub stats: Stats,
    pub outputs: Vec<T>,
    /// The first few errors, for the report.
    pub sample_errors: Vec<String>,
}

/// Runs `job(client, index)` for every index in `0..jobs` on `concurrency` connections.
/// Each job's `Ok` output is collected; errors are counted per tool by the client and the
/// first few are kept as text.
pub fn run_phase<T, F>(
    name: &str,
    url: &Url,
    concurrency: usize,
    jobs: usize,
    job: F,
) -> Result<PhaseResult<T>, CallError>
where
    T: Send + 'static,
    F: Fn(&mut McpClient, usize) -> Result<T, CallError> + Send + Sync + 'static,
{
    let progress = Progress::start(name, jobs as u64);
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency.max(1).min(jobs.max(1)) {
        let (next, job, url, counter) = (
            Arc::clone(&next),
            Arc::clone(&job),
            url.clone(),
            progress.counter(),
        );
        handles.push(std::thread::spawn(
            move || -> Result<(Stats, Vec<T>, Vec<String>), CallError> {
                let mut client = McpClient::connect(&url)?;
                let mut outputs = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= jobs {
                        break;
                    }
                    match job(&mut client, index) {
                        Ok(output) => outputs.push(output),
                        Err(error) if errors.len() < 5 => errors.push(error.to_string()),
                        Err(_) => {}
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok((client.stats, outputs, errors))
            },
        ));
    }
    let mut result = PhaseResult {
        name: name.to_string(),
        elapsed: Duration::ZERO,
        stats: Stats::default(),
        outputs: Vec::new(),
        sample_errors: Vec::new(),
    };
    for handle in handles {
        let (stats, outputs, errors) = handle
            .join()
            .map_err(|_| CallError::Json("a worker thread panicked".into()))??;
        result.stats.merge(&stats);
        result.outputs.extend(outputs);
        result.sample_errors.extend(errors);
    }
    result.elapsed = started.elapsed();
    drop(progress);
    Ok(result)
}

//! Progress for long runs: a live line on a terminal, a plain line every few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    printer: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &str, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (printer_done, printer_stop, label) =
            (Arc::clone(&done), Arc::clone(&stop), label.to_string());
        let printer = std::thread::spawn(move || {
            let terminal = std::io::stderr().is_terminal();
            let every = if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            let started = Instant::now();
            let mut last = Instant::now();
            while !printer_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                let done = printer_done.load(Ordering::Relaxed);
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let line = format!("{label}: {done}/{total} ({rate:.0}/s)");
                if terminal {
                    eprint!("\r{line}   ");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
            if terminal {
                eprint!("\r{:60}\r", "");
            }
        });
        Progress {
            done,
            stop,
            printer: Some(printer),
        }
    }

    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(printer) = self.printer.take() {
            let _ = printer.join();
        }
    }
}

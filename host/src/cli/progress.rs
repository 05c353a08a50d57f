//! Progress of a running action: a bar with bytes and rate on a terminal, a plain line now
//! and then otherwise.

use crate::cap::ActionScope;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Run `f` with the bar hidden.
pub fn suspend(f: impl FnOnce()) {
    let bar = BAR.lock().unwrap().clone();
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

pub fn clear() {
    if let Some(b) = BAR.lock().unwrap().take() {
        b.finish_and_clear();
    }
}

fn human(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Follow an action until `done` resolves.
pub async fn follow<T>(label: String, scope: &ActionScope, done: impl Future<Output = T>) -> T {
    let sample = || {
        let bytes = scope.progress.bytes.load(Ordering::Relaxed);
        let step = scope.progress.step.lock().unwrap().clone();
        let step = step
            .map(|(s, d, t)| match t {
                Some(t) => format!(" [{s} {d}/{t}]"),
                None => format!(" [{s} {d}]"),
            })
            .unwrap_or_default();
        (bytes, step)
    };
    follow_with(label, None, sample, done).await
}

/// Follow work that counts bytes into `counter`, out of `total` when known.
pub async fn follow_bytes<T>(
    label: String,
    total: Option<u64>,
    counter: &AtomicU64,
    done: impl Future<Output = T>,
) -> T {
    let sample = || (counter.load(Ordering::Relaxed), String::new());
    follow_with(label, total, sample, done).await
}

async fn follow_with<T>(
    label: String,
    total: Option<u64>,
    sample: impl Fn() -> (u64, String),
    done: impl Future<Output = T>,
) -> T {
    let tty = std::io::stderr().is_terminal();
    if tty {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta})",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {bytes} ({binary_bytes_per_sec}) {elapsed}",
                )
                .expect("valid template"),
            ),
        };
        bar.set_message(label.clone());
        *BAR.lock().unwrap() = Some(bar);
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    tokio::pin!(done);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let out = loop {
        tokio::select! {
            r = &mut done => break r,
            _ = tick.tick() => {
                let (bytes, step) = sample();
                if let Some(bar) = BAR.lock().unwrap().as_ref() {
                    bar.set_position(bytes);
                    bar.set_message(format!("{label}{step}"));
                    bar.tick();
                } else if last_line.elapsed() >= Duration::from_secs(10) {
                    last_line = Instant::now();
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    eprintln!("{label}{step}: {} so far ({}/s)", human(bytes), human((bytes as f64 / secs) as u64));
                }
            }
        }
    };
    clear();
    out
}

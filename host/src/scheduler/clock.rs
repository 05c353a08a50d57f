//! The scheduler's clock: the system's, or — for tests, which must never sleep through
//! real hours — a time read from a file that the test rewrites (`COFFER_TEST_CLOCK`).

use jiff::Timestamp;
use std::path::PathBuf;
use std::time::Duration;

#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Wait until `t`, or less (the caller looks again either way).
    async fn wait_until(&self, t: Timestamp);
}

pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn wait_until(&self, t: Timestamp) {
        // Woken at least every minute: the catalog (new or changed Policies) is re-read.
        let left = t.duration_since(Timestamp::now()).unsigned_abs();
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
    }
}

/// A clock that reads an RFC 3339 time from a file: the test moves time by rewriting it.
pub struct FileClock {
    pub path: PathBuf,
}

impl FileClock {
    fn read(&self) -> Option<Timestamp> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

#[async_trait::async_trait]
impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        self.read().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    async fn wait_until(&self, t: Timestamp) {
        let start = self.read();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.read();
            if now != start || now.is_some_and(|n| n >= t) {
                return;
            }
        }
    }
}

/// The clock of this process: `COFFER_TEST_CLOCK`'s file when set (tests only: every
/// command that reads the time — the scheduler, `policy run`, `simulate`, `get
/// compliance` — then agrees on it), else the system's.
pub fn from_env() -> std::sync::Arc<dyn Clock> {
    match std::env::var_os("COFFER_TEST_CLOCK") {
        Some(path) => std::sync::Arc::new(FileClock { path: path.into() }),
        None => std::sync::Arc::new(SystemClock),
    }
}

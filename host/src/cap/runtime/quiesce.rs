//! The quiesce window: from `runtime.quiesce-begin` to `quiesce-end`, the time the
//! application is paused. Recorded on the ActionSet and the restore point, and bounded by
//! `spec.limits.quiesce`: a watchdog ends an overlong window by running the action's guards
//! and failing the action, whatever the plugin is doing (looping, blocked in a host call).

use crate::cap::ActionScope;
use crate::model::{QuiesceWindow, now_rfc3339_ms};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Quiesce {
    state: Mutex<State>,
    /// Cancelled when the window outlives the limit: the action's call ends at once.
    pub expired: CancellationToken,
}

#[derive(Default)]
struct State {
    began: Option<Instant>,
    window: Option<QuiesceWindow>,
    watchdog: Option<tokio::task::AbortHandle>,
}

impl Quiesce {
    /// The window as recorded (none when the action never quiesced).
    pub fn window(&self) -> Option<QuiesceWindow> {
        self.state.lock().unwrap().window.clone()
    }

    /// Whether the application is quiesced now.
    pub fn is_open(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.window.as_ref().is_some_and(|w| w.ms.is_none()) && !self.expired.is_cancelled()
    }

    /// The message an action fails with when its window ran out.
    pub fn limit_message(scope: &ActionScope) -> String {
        format!(
            "limit(quiesce): the application stayed quiesced longer than spec.limits.quiesce ({}) of Blueprint {}; its guards were run to end the quiesce. Raise the limit if the snapshot cut needs longer",
            humantime::format_duration(scope.limits.quiesce),
            scope.actor.blueprint
        )
    }

    /// Open the window and start its watchdog.
    pub(super) fn begin(&self, scope: &Arc<ActionScope>) -> Result<(), String> {
        let mut st = self.state.lock().unwrap();
        if st.window.is_some() {
            return Err("the quiesce window was opened already; an action has one".into());
        }
        st.began = Some(Instant::now());
        st.window = Some(QuiesceWindow {
            begin: now_rfc3339_ms(),
            end: None,
            ms: None,
        });
        let scope = scope.clone();
        let limit = scope.limits.quiesce;
        let task = tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            tracing::error!(
                limit_ms = limit.as_millis() as u64,
                "the quiesce window ran out; running the guards"
            );
            scope
                .cancelled
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let failed = scope.guards.fire_all(&scope, "limit").await;
            for f in failed {
                tracing::error!("{f}");
            }
            scope.quiesce.expired.cancel();
        });
        st.watchdog = Some(task.abort_handle());
        Ok(())
    }

    /// Close the window; its length in milliseconds.
    pub(super) fn end(&self, scope: &ActionScope) -> Result<u64, String> {
        if self.expired.is_cancelled() {
            return Err(Self::limit_message(scope));
        }
        let mut st = self.state.lock().unwrap();
        let Some(began) = st.began else {
            return Err("quiesce-end without quiesce-begin".into());
        };
        if let Some(w) = &st.window
            && let Some(ms) = w.ms
        {
            return Ok(ms);
        }
        if let Some(w) = st.watchdog.take() {
            w.abort();
        }
        let ms = began.elapsed().as_millis() as u64;
        if let Some(w) = &mut st.window {
            w.end = Some(now_rfc3339_ms());
            w.ms = Some(ms);
        }
        Ok(ms)
    }

    /// The action has ended: a window still open is closed where it stands, and its
    /// watchdog stopped.
    pub fn close(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(w) = st.watchdog.take() {
            w.abort();
        }
        if let (Some(began), Some(w)) = (st.began, &mut st.window)
            && w.ms.is_none()
        {
            w.end = Some(now_rfc3339_ms());
            w.ms = Some(began.elapsed().as_millis() as u64);
        }
    }
}

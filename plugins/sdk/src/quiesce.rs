//! The quiesce window: the time the application is paused (writes blocked, a lock held, a
//! filesystem frozen) while a snapshot is cut. Keep it short: cut with `snapshot::create`
//! (it returns once the copy is cut, not when it is ready), end the window, then wait for
//! readiness and export. The host bounds the window by the Blueprint's
//! `spec.limits.quiesce` (10 s by default) and, past it, runs the guards and fails the action.
//!
//! ```ignore
//! let thaw = Cmd::new(["fsfreeze", "-u", "/data"]).guard("thaw /data")?;
//! let window = sdk::quiesce::Window::begin()?;
//! Cmd::new(["fsfreeze", "-f", "/data"]).run(None, 0)?;
//! let cut = snapshot::create(&volume, None, &[])?;
//! thaw.fire()?;
//! let ms = window.end()?;
//! ```

use crate::runtime;
use crate::types::Error;

/// An open quiesce window. Dropping it without [`Window::end`] leaves the window open until
/// the action ends (the host closes it then, and its guards run).
pub struct Window(());

impl Window {
    /// The application is quiesced from now on; one window per action.
    pub fn begin() -> Result<Window, Error> {
        runtime::quiesce_begin()?;
        Ok(Window(()))
    }

    /// The application runs again: the window's length in milliseconds.
    pub fn end(self) -> Result<u64, Error> {
        runtime::quiesce_end()
    }
}

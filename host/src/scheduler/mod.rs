//! Running Policies: one tick ([`tick`]: the backups, then retention) and what a Policy
//! will keep and delete ([`simulate`]). The rules themselves (schedules, retention) are
//! [`crate::policy`]'s.

pub mod clock;
pub mod compliance;
pub mod local;
pub mod plan;
pub mod simulate;
pub mod stream;
pub mod tick;

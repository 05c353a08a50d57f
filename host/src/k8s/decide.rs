//! The reconcile decisions, apart from the API calls that carry them out, so they are
//! tested as a table: what the daemon does with an ActionSet given its spec and status,
//! whether this instance runs it, and how long another runner's heartbeat has stood still.

use super::daemon::LOCAL_RUN_ANNOTATION;
use super::kinds::{ActionSetResource, status};
use crate::model::Phase;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do until it changes.
    Wait,
    /// Look again after this long.
    Requeue(Duration),
    /// Claim it and run it (within `deadline`, if any).
    Start { deadline: Option<Duration> },
    /// Fail it before it starts, for this reason.
    Refuse(String),
    /// Stop the action this instance runs, for this reason.
    Stop(String),
    /// Its runner is gone: settle it.
    Settle,
}

/// What the daemon knows besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// This instance runs it.
    pub here: bool,
    /// The object's `status.runner` is this instance (a restart: nothing of it runs here).
    pub mine: bool,
    /// How long this instance has seen its runner's heartbeat unchanged (`None`: it just
    /// changed, or was never seen).
    pub quiet_for: Option<Duration>,
    /// How long ago it was created.
    pub age: Duration,
    /// After how long a still heartbeat means the runner is gone.
    pub runner_timeout: Duration,
}

/// What to do with an ActionSet that is not being deleted.
pub fn decide(o: &ActionSetResource, f: Facts) -> Decision {
    let st = status(o);
    match (st.phase, f.here) {
        (Phase::Completed | Phase::Failed, _) => Decision::Wait,
        (Phase::Running, true) if o.spec.cancel => Decision::Stop("cancelled (spec.cancel)".into()),
        (Phase::Running, true) => Decision::Wait,
        (Phase::Running, false) => {
            if f.mine {
                return Decision::Settle;
            }
            match f.quiet_for {
                Some(q) if q >= f.runner_timeout => Decision::Settle,
                Some(q) => Decision::Requeue(f.runner_timeout - q),
                None => Decision::Requeue(f.runner_timeout),
            }
        }
        (Phase::Pending, _) => {
            // `coffer … --local-run` made it to run it itself: leave it to that process for
            // a while (it claims it at once), then call it abandoned.
            if o.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LOCAL_RUN_ANNOTATION))
            {
                return if f.age < f.runner_timeout {
                    Decision::Requeue(f.runner_timeout - f.age)
                } else {
                    Decision::Refuse(
                        "the `coffer --local-run` process that made this ActionSet never started it"
                            .into(),
                    )
                };
            }
            if o.spec.cancel {
                return Decision::Refuse("cancelled before it started".into());
            }
            match o.spec.deadline.as_deref().map(humantime::parse_duration) {
                None => Decision::Start { deadline: None },
                Some(Ok(d)) => Decision::Start { deadline: Some(d) },
                Some(Err(e)) => {
                    Decision::Refuse(format!("spec.deadline: {e} (write it like 30m or 2h)"))
                }
            }
        }
    }
}

/// What to do with an ActionSet being deleted (its finalizer holds it): `Ok` lets it go.
pub fn on_delete(o: &ActionSetResource, f: Facts) -> Result<(), Decision> {
    let st = status(o);
    match (st.phase, f.here) {
        (Phase::Running, true) => Err(Decision::Stop(
            "cancelled: the ActionSet was deleted".into(),
        )),
        // Another runner that is still alive finishes first (it sees the deletion in its
        // next write and stops); a runner that is gone has its partial objects removed.
        (Phase::Running, false) => match decide(o, f) {
            Decision::Settle => Err(Decision::Settle),
            other => Err(other),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionSetSpec, ActionSetStatus};

    fn set(
        phase: Phase,
        cancel: bool,
        deadline: Option<&str>,
        local_run: bool,
    ) -> ActionSetResource {
        let mut o = ActionSetResource::new(
            "s",
            ActionSetSpec {
                action: "backup".into(),
                workload: "statefulset/pg".into(),
                blueprint: String::new(),
                profile: String::new(),
                restore_point: None,
                params: serde_json::Value::Null,
                cancel,
                deadline: deadline.map(String::from),
                target_namespace: None,
            },
        );
        o.status = Some(ActionSetStatus {
            phase,
            ..Default::default()
        });
        if local_run {
            o.metadata.annotations = Some(
                [(LOCAL_RUN_ANNOTATION.to_string(), "cli-1".to_string())]
                    .into_iter()
                    .collect(),
            );
        }
        o
    }

    const T: Duration = Duration::from_secs(30);

    fn facts(here: bool, mine: bool, quiet: Option<u64>, age: u64) -> Facts {
        Facts {
            here,
            mine,
            quiet_for: quiet.map(Duration::from_secs),
            age: Duration::from_secs(age),
            runner_timeout: T,
        }
    }

    #[test]
    fn decisions() {
        use Decision::*;
        use Phase::*;
        let s = Duration::from_secs;
        for (name, o, f, want) in [
            (
                "finished",
                set(Completed, false, None, false),
                facts(false, false, None, 0),
                Wait,
            ),
            (
                "failed",
                set(Failed, true, None, false),
                facts(false, false, None, 0),
                Wait,
            ),
            (
                "pending starts",
                set(Pending, false, None, false),
                facts(false, false, None, 0),
                Start { deadline: None },
            ),
            (
                "with a deadline",
                set(Pending, false, Some("3s"), false),
                facts(false, false, None, 0),
                Start {
                    deadline: Some(s(3)),
                },
            ),
            (
                "a bad deadline",
                set(Pending, false, Some("soon"), false),
                facts(false, false, None, 0),
                Refuse("spec.deadline: expected number at 0 (write it like 30m or 2h)".into()),
            ),
            (
                "cancelled first",
                set(Pending, true, None, false),
                facts(false, false, None, 0),
                Refuse("cancelled before it started".into()),
            ),
            (
                "a fresh local run",
                set(Pending, false, None, true),
                facts(false, false, None, 10),
                Requeue(s(20)),
            ),
            (
                "an abandoned local run",
                set(Pending, false, None, true),
                facts(false, false, None, 31),
                Refuse(
                    "the `coffer --local-run` process that made this ActionSet never started it"
                        .into(),
                ),
            ),
            (
                "running here",
                set(Running, false, None, false),
                facts(true, true, None, 0),
                Wait,
            ),
            (
                "cancel while running here",
                set(Running, true, None, false),
                facts(true, true, None, 0),
                Stop("cancelled (spec.cancel)".into()),
            ),
            (
                "mine but not here: restarted",
                set(Running, false, None, false),
                facts(false, true, None, 0),
                Settle,
            ),
            (
                "another runner, first seen",
                set(Running, false, None, false),
                facts(false, false, None, 0),
                Requeue(T),
            ),
            (
                "another runner, quiet a while",
                set(Running, false, None, false),
                facts(false, false, Some(12), 0),
                Requeue(s(18)),
            ),
            (
                "another runner, gone",
                set(Running, false, None, false),
                facts(false, false, Some(30), 0),
                Settle,
            ),
        ] {
            assert_eq!(decide(&o, f), want, "{name}");
        }
    }

    #[test]
    fn deletions() {
        use Decision::*;
        use Phase::*;
        assert_eq!(
            on_delete(
                &set(Running, false, None, false),
                facts(true, true, None, 0)
            ),
            Err(Stop("cancelled: the ActionSet was deleted".into()))
        );
        assert_eq!(
            on_delete(
                &set(Running, false, None, false),
                facts(false, false, Some(40), 0)
            ),
            Err(Settle)
        );
        assert_eq!(
            on_delete(
                &set(Running, false, None, false),
                facts(false, false, Some(5), 0)
            ),
            Err(Requeue(Duration::from_secs(25)))
        );
        for phase in [Pending, Completed, Failed] {
            assert_eq!(
                on_delete(
                    &set(phase, false, None, false),
                    facts(false, false, None, 0)
                ),
                Ok(())
            );
        }
    }
}

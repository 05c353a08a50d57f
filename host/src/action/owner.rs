//! Who runs an ActionSet: this process, identified by pid and start time within its PID
//! namespace and boot, and by a random token its status writes compare-and-set on. A process
//! that shares the state dir from another PID namespace (another container) cannot see the
//! runner in /proc, so it goes by the runner's heartbeat.

use crate::model::Owner;

/// A runner whose heartbeat is older than this is gone (it beats every 2 s).
pub const HEARTBEAT_STALE_SECS: i64 = 30;

/// The start time of a process (clock ticks since boot), from /proc.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it start
    // after the last ')'. starttime is field 22, the 20th after that.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

pub fn current() -> Owner {
    let pid = std::process::id();
    let mut t = [0u8; 16];
    getrandom::fill(&mut t).expect("the OS random source failed");
    Owner {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        boot_id: boot_id(),
        pid_namespace: pid_namespace(),
        token: hex::encode(t),
    }
}

/// Whether the owner still runs. `heartbeat_age`: seconds since its last heartbeat.
pub fn is_alive(o: &Owner, heartbeat_age: Option<i64>) -> bool {
    let here = (o.boot_id.is_empty() || o.boot_id == boot_id())
        && (o.pid_namespace.is_empty() || o.pid_namespace == pid_namespace());
    if here {
        // Its /proc entry is ours to read: definitive.
        return start_ticks(o.pid).is_some_and(|t| t == o.start_ticks);
    }
    heartbeat_age.is_some_and(|age| age < HEARTBEAT_STALE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stranger_is_not() {
        let me = current();
        assert!(me.start_ticks > 0 && !me.boot_id.is_empty() && me.token.len() == 32);
        assert!(is_alive(&me, None));
        assert!(!is_alive(
            &Owner {
                start_ticks: me.start_ticks + 1,
                ..me.clone()
            },
            None
        ));
        // In another PID namespace: the heartbeat decides.
        let elsewhere = Owner {
            pid_namespace: "pid:[1]".into(),
            ..me.clone()
        };
        assert!(is_alive(&elsewhere, Some(3)));
        assert!(!is_alive(&elsewhere, Some(300)));
        assert!(!is_alive(&elsewhere, None));
    }
}

//! Who runs an ActionSet: this process, identified by pid and start time so a dead run can
//! be told from a live one even after its pid is reused.

use crate::model::Owner;

/// The start time of a process (clock ticks since boot), from /proc.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it start
    // after the last ')'. starttime is field 22, the 20th after that.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn current() -> Owner {
    let pid = std::process::id();
    Owner {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
    }
}

pub fn is_alive(o: &Owner) -> bool {
    start_ticks(o.pid).is_some_and(|t| t == o.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stranger_is_not() {
        let me = current();
        assert!(me.start_ticks > 0);
        assert!(is_alive(&me));
        assert!(!is_alive(&Owner {
            pid: me.pid,
            start_ticks: me.start_ticks + 1
        }));
        assert!(!is_alive(&Owner {
            pid: u32::MAX - 1,
            start_ticks: 1
        }));
    }
}

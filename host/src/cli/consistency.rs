//! How the quiesce window and the guards read in `describe` and `get restorepoints`.

use crate::model::{ActionSet, GuardState, QuiesceWindow};

/// `89ms`, or `-` for a backup that never quiesced (`open` while a window is open).
pub fn window(w: Option<&QuiesceWindow>) -> String {
    match w {
        None => "-".into(),
        Some(w) => match w.ms {
            Some(ms) => format!("{ms}ms"),
            None => "open".into(),
        },
    }
}

/// The quiesce window and each guard of an ActionSet, for `describe actionset`.
pub fn describe(a: &ActionSet) {
    if let Some(w) = &a.status.quiesce {
        out!(
            "Quiesced:     {} ({} .. {})",
            window(Some(w)),
            w.begin,
            w.end.as_deref().unwrap_or("still open")
        );
    }
    if a.status.guards.is_empty() {
        return;
    }
    out!("Guards:");
    super::output::table(
        &["  NAME", "STATE", "BY", "AT", "COMMAND", "RESULT"],
        a.status
            .guards
            .iter()
            .map(|g| {
                let at = match (g.state, g.ended_ms) {
                    (GuardState::Armed, _) | (_, None) => format!("{}ms", g.registered_ms),
                    (_, Some(end)) => format!("{}ms..{end}ms", g.registered_ms),
                };
                vec![
                    format!("  {}", g.name),
                    g.state.as_str().to_string(),
                    g.fired_by.clone().unwrap_or_default(),
                    at,
                    g.command.join(" "),
                    g.result.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
}

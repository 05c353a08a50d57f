//! The hostile plugin's consistency modes: guards around a step (`guards`) and a quiesced
//! snapshot cut (`cut`), for the tests of guards, the quiesce window and CSI cut timing.

use crate::{Params, ok_artifact};
use coffer_plugin_sdk::{self as sdk, ActionOutput, Cmd, Error, snapshot};

/// Guards around a step, inside a quiesce window when asked; see [`Params::guards`].
pub(crate) fn guarded(p: &Params) -> Result<ActionOutput, Error> {
    let window = if p.quiesce {
        Some(sdk::quiesce::Window::begin()?)
    } else {
        None
    };
    let mut guards = Vec::new();
    for (i, g) in p.guards.iter().enumerate() {
        guards.push(Cmd::new(g.clone()).guard(&format!("guard {i}"))?);
    }
    if !p.argv.is_empty() {
        Cmd::new(p.argv.clone()).run(None, 4096)?;
    }
    sdk::log::info("the guarded step is done", &[]);
    match p.then.as_str() {
        "fire" => {
            for g in &guards {
                g.fire()?;
            }
        }
        "disarm" => guards.iter().for_each(|g| g.disarm()),
        "fail" => return Err(sdk::internal("failed after the guarded step")),
        "hang" => {
            let secs = if p.count > 0 { p.count } else { 600 };
            Cmd::new(["sleep".to_string(), secs.to_string()]).run(None, 0)?;
        }
        "trap" => panic!("hostile plugin: trap after the guarded step"),
        _ => {}
    }
    let ms = match window {
        Some(w) => w.end()?,
        None => 0,
    };
    let mut out = ok_artifact()?;
    out.outputs.push(("windowMs".into(), ms.to_string()));
    Ok(out)
}

/// Guard, window, `snapshot.create` of `pvc` in class `target` (it returns at the cut),
/// the guard fired and the window ended at once, then `wait-ready`.
pub(crate) fn quiesced_cut(p: &Params) -> Result<ActionOutput, Error> {
    let window = sdk::quiesce::Window::begin()?;
    let guard = match p.guards.first() {
        Some(g) => Some(Cmd::new(g.clone()).guard("unquiesce")?),
        None => None,
    };
    let class = (!p.target.is_empty()).then(|| p.target.clone());
    let made = snapshot::create(
        &snapshot::VolumeRef {
            namespace: None,
            name: p.pvc.clone(),
        },
        class.as_deref(),
        &[],
    )?;
    if let Some(g) = &guard {
        g.fire()?;
    }
    let ms = window.end()?;
    let ready = snapshot::wait_ready(&made.snapshot, 60_000)?;
    let mut out = ok_artifact()?;
    out.outputs.extend([
        ("snapshot".into(), made.snapshot.name.clone()),
        ("createdReady".into(), made.ready.to_string()),
        ("cutAt".into(), made.cut_at.clone().unwrap_or_default()),
        ("windowMs".into(), ms.to_string()),
        ("ready".into(), ready.ready.to_string()),
    ]);
    Ok(out)
}

//! Calling into a plugin: a fresh Store per call with its limits, and the outcome sorted into
//! what the user needs to know (the plugin failed, a limit was hit, it crashed, time ran out).

use super::{EPOCH_TICK, EffectiveLimits, PluginState, Prepared};
use crate::cap::Lending;
use crate::wit::wit_plugin;
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Limit(String),
    #[error("the plugin crashed (trap): {0}")]
    Trap(String),
    #[error("{0}")]
    Plugin(String),
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("the action ran past its deadline of {}; raise spec.limits.timeouts.{action} in the Blueprint if it needs longer", humantime::format_duration(*.timeout))]
    Timeout { timeout: Duration, action: String },
}

const CPU_LIMIT_MSG: &str = "guest CPU limit reached";

fn new_store(prepared: &Prepared, lending: &Lending) -> Store<PluginState> {
    let lim = lending.scope.limits.clone();
    let mut store = Store::new(&prepared.engine, PluginState::new(lending));
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(lim.hostcall_payload as usize);
    store.set_max_component_handles(lim.handles);
    let budget = (lim.cpu.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(1);
    // Fires only while guest code runs (the deadline is checked in wasm, not in host
    // calls), so counting calls approximates guest CPU time. Yielding lets the wall-clock
    // timeout and cancellation preempt a guest that never calls the host.
    store.epoch_deadline_callback(move |mut cx| {
        let st = cx.data_mut();
        st.cpu_ticks += 1;
        if st.cpu_ticks > budget {
            return Err(wasmtime::Error::msg(CPU_LIMIT_MSG));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Sort a trap into a limit (naming it and how to raise it) or a crash.
fn classify(store: &Store<PluginState>, err: wasmtime::Error, lim: &EffectiveLimits) -> CallError {
    let st = store.data();
    let bp = &st.scope.actor.blueprint;
    let plugin = &st.scope.actor.plugin;
    if let Some(asked) = st.limiter.hit {
        return CallError::Limit(format!(
            "plugin {plugin} exceeded its memory limit of {} MiB (its memories and tables together asked for {} MiB); raise spec.limits.memory in Blueprint {bp} if it needs more",
            lim.memory >> 20,
            asked.div_ceil(1 << 20)
        ));
    }
    if st.cpu_ticks * (EPOCH_TICK.as_millis() as u64) > lim.cpu.as_millis() as u64 {
        return CallError::Limit(format!(
            "plugin {plugin} used more than its guest CPU limit of {}; raise spec.limits.cpu in Blueprint {bp} if it needs more",
            humantime::format_duration(lim.cpu)
        ));
    }
    let text = format!("{err:#}");
    if text.contains("resource table has no free keys")
        || text.contains("store handle limit exceeded")
    {
        return CallError::Limit(format!(
            "plugin {plugin} exceeded the handle limit of {} open handles (processes, streams, transfers, stores, secrets); raise spec.limits.handles in Blueprint {bp} if it needs more",
            lim.handles
        ));
    }
    // The root cause says what happened (e.g. "wasm trap: call stack exhausted"); the wasm
    // backtrace around it is for developers. A panicking Rust plugin wrote why to stderr.
    let mut why = err.root_cause().to_string();
    let stderr = String::from_utf8_lossy(&st.guest_stderr.contents())
        .trim()
        .to_string();
    if !stderr.is_empty() {
        why.push_str(&format!(
            "; the plugin wrote: {}",
            stderr.replace('\n', " ")
        ));
    }
    CallError::Trap(st.scope.redactor.redact(&why))
}

/// Run a call until it ends, its deadline passes, or its quiesce window runs out (then the
/// guards have run and the call is dropped, with every process it started).
async fn with_deadline<T>(
    fut: impl Future<Output = wasmtime::Result<T>>,
    lending: &Lending,
    action: &str,
) -> Result<wasmtime::Result<T>, CallError> {
    let scope = &lending.scope;
    let timeout = scope.limits.timeout;
    tokio::select! {
        r = tokio::time::timeout(timeout, fut) => r.map_err(|_| CallError::Timeout {
            timeout,
            action: action.to_string(),
        }),
        () = scope.quiesce.expired.cancelled() => Err(CallError::Limit(
            crate::cap::runtime::Quiesce::limit_message(scope),
        )),
    }
}

/// Ask a plugin for its manifest.
pub async fn call_describe(
    prepared: &Prepared,
    lending: &Lending,
) -> Result<wit_plugin::Manifest, CallError> {
    let lim = lending.scope.limits.clone();
    let mut store = new_store(prepared, lending);
    let res = with_deadline(
        async {
            let bp = prepared.pre.instantiate_async(&mut store).await?;
            bp.coffer_blueprint0_1_0_plugin()
                .call_describe(&mut store)
                .await
        },
        lending,
        "describe",
    )
    .await?;
    res.map_err(|e| classify(&store, e, &lim))
}

/// Run the plugin's `validate`.
pub async fn call_validate(
    prepared: &Prepared,
    lending: &Lending,
    req: &wit_plugin::ActionRequest,
) -> Result<(), CallError> {
    let lim = lending.scope.limits.clone();
    let mut store = new_store(prepared, lending);
    let res = with_deadline(
        async {
            let bp = prepared.pre.instantiate_async(&mut store).await?;
            bp.coffer_blueprint0_1_0_plugin()
                .call_validate(&mut store, req)
                .await
        },
        lending,
        &req.action,
    )
    .await?;
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(problems)) => {
            let r = &store.data().scope.redactor;
            Err(CallError::Invalid(
                problems.iter().map(|p| r.redact(p)).collect(),
            ))
        }
        Err(e) => Err(classify(&store, e, &lim)),
    }
}

/// Run an action. The Store, and with it every process, stream and transfer the plugin
/// opened, is dropped before this returns, whatever the outcome.
pub async fn call_run(
    prepared: &Prepared,
    lending: &Lending,
    req: &wit_plugin::ActionRequest,
) -> Result<wit_plugin::ActionOutput, CallError> {
    let lim = lending.scope.limits.clone();
    let mut store = new_store(prepared, lending);
    let res = with_deadline(
        async {
            let bp = prepared.pre.instantiate_async(&mut store).await?;
            bp.coffer_blueprint0_1_0_plugin()
                .call_run(&mut store, req)
                .await
        },
        lending,
        &req.action,
    )
    .await?;
    match res {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => {
            let r = &store.data().scope.redactor;
            Err(CallError::Plugin(r.redact(&crate::cap::error_text(&e))))
        }
        Err(e) => Err(classify(&store, e, &lim)),
    }
}

//! Prometheus metrics of `coffer daemon`, in the text exposition format on `/metrics`:
//! actions by action and result, their duration (histogram) and bytes, actions running,
//! failed reconciles by kind of error, whether this instance leads, Policy ticks by result,
//! and each workload's compliance (on Kubernetes); each Policy stream's lag and size (the
//! local scheduler, with `--metrics-addr`). A handful of series do not need a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    actions: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, Histogram>,
    bytes: BTreeMap<String, u64>,
    running: i64,
    leader: bool,
    /// Failed reconciles, by the kind of error (`Error::metric_label`).
    reconcile_errors: BTreeMap<&'static str, u64>,
    /// Policy ticks by (policy, result).
    policy_runs: BTreeMap<(String, String), u64>,
    /// (policy, workload) -> state, as last judged.
    compliance: BTreeMap<(String, String), String>,
    /// Local mode: (policy, workload) -> its stream, as its last link left it.
    streams: BTreeMap<(String, String), crate::model::StreamStatus>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn started(&self) {
        self.inner.lock().unwrap().running += 1;
    }

    pub fn finished(&self, action: &str, result: &str, seconds: f64, bytes: u64) {
        let mut m = self.inner.lock().unwrap();
        m.running -= 1;
        *m.actions
            .entry((action.to_string(), result.to_string()))
            .or_default() += 1;
        *m.bytes.entry(action.to_string()).or_default() += bytes;
        let h = m.durations.entry(action.to_string()).or_default();
        if h.buckets.is_empty() {
            h.buckets = vec![0; BUCKETS.len()];
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn reconcile_failed(&self, label: &'static str) {
        *self
            .inner
            .lock()
            .unwrap()
            .reconcile_errors
            .entry(label)
            .or_default() += 1;
    }

    pub fn policy_run(&self, policy: &str, result: &str, count: u64) {
        *self
            .inner
            .lock()
            .unwrap()
            .policy_runs
            .entry((policy.to_string(), result.to_string()))
            .or_default() += count;
    }

    /// The compliance of every (policy, workload), replacing the last.
    pub fn set_compliance(&self, rows: BTreeMap<(String, String), String>) {
        self.inner.lock().unwrap().compliance = rows;
    }

    /// The stream of `workload` under `policy`, replacing what its last link said.
    pub fn set_stream(&self, policy: &str, s: &crate::model::StreamStatus) {
        self.inner
            .lock()
            .unwrap()
            .streams
            .insert((policy.to_string(), s.workload.clone()), s.clone());
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.lock().unwrap().leader = leader;
    }

    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap();
        let mut o = String::new();
        o.push_str("# HELP coffer_actions_total Actions finished, by action and result.\n# TYPE coffer_actions_total counter\n");
        for ((a, r), n) in &m.actions {
            let _ = writeln!(
                o,
                "coffer_actions_total{{action=\"{a}\",result=\"{r}\"}} {n}"
            );
        }
        o.push_str("# HELP coffer_action_duration_seconds How long finished actions took.\n# TYPE coffer_action_duration_seconds histogram\n");
        for (a, h) in &m.durations {
            for (le, n) in BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    o,
                    "coffer_action_duration_seconds_bucket{{action=\"{a}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                o,
                "coffer_action_duration_seconds_bucket{{action=\"{a}\",le=\"+Inf\"}} {}\ncoffer_action_duration_seconds_sum{{action=\"{a}\"}} {}\ncoffer_action_duration_seconds_count{{action=\"{a}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        o.push_str("# HELP coffer_reconcile_errors_total Failed reconciles, by kind of error.\n# TYPE coffer_reconcile_errors_total counter\n");
        for (e, n) in &m.reconcile_errors {
            let _ = writeln!(o, "coffer_reconcile_errors_total{{error=\"{e}\"}} {n}");
        }
        o.push_str("# HELP coffer_policy_runs_total Policy ticks, by policy and result (Completed, Failed, Missed, Skipped).\n# TYPE coffer_policy_runs_total counter\n");
        for ((p, r), n) in &m.policy_runs {
            let _ = writeln!(
                o,
                "coffer_policy_runs_total{{policy=\"{p}\",result=\"{r}\"}} {n}"
            );
        }
        o.push_str("# HELP coffer_compliance 1 for each workload's state under each Policy (Compliant, NonCompliant, Unmanaged).\n# TYPE coffer_compliance gauge\n");
        for ((p, w), state) in &m.compliance {
            let _ = writeln!(
                o,
                "coffer_compliance{{policy=\"{p}\",workload=\"{w}\",state=\"{state}\"}} 1"
            );
        }
        render_streams(&mut o, &m.streams);
        o.push_str("# HELP coffer_action_bytes_total Bytes moved by finished actions.\n# TYPE coffer_action_bytes_total counter\n");
        for (a, n) in &m.bytes {
            let _ = writeln!(o, "coffer_action_bytes_total{{action=\"{a}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP coffer_actions_running Actions running now.\n# TYPE coffer_actions_running gauge\ncoffer_actions_running {}\n# HELP coffer_leader 1 when this instance holds the Lease.\n# TYPE coffer_leader gauge\ncoffer_leader {}",
            m.running,
            u8::from(m.leader)
        );
        o
    }
}

/// A stream series: name, type, help, and its value for one stream.
type StreamSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::model::StreamStatus) -> Option<f64>,
);

fn render_streams(
    o: &mut String,
    streams: &BTreeMap<(String, String), crate::model::StreamStatus>,
) {
    let series: [StreamSeries; 5] = [
        (
            "coffer_stream_lag_records",
            "gauge",
            "Records the source had beyond the last link's cut when it ended.",
            |s| s.lag_records.map(|l| l as f64),
        ),
        (
            "coffer_stream_links",
            "gauge",
            "Restore points in the stream's current chain, the full backup included.",
            |s| Some(s.links as f64),
        ),
        (
            "coffer_stream_objects",
            "gauge",
            "Objects (segments and records) in the stream's current chain.",
            |s| Some(s.objects as f64),
        ),
        (
            "coffer_stream_links_made_total",
            "counter",
            "Links that made a restore point.",
            |s| Some(s.made as f64),
        ),
        (
            "coffer_stream_links_unchanged_total",
            "counter",
            "Links that found nothing new (no restore point).",
            |s| Some(s.unchanged as f64),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((p, w), s) in streams {
            if let Some(v) = value(s) {
                let _ = writeln!(o, "{name}{{policy=\"{p}\",workload=\"{w}\"}} {v}");
            }
        }
    }
}

/// Serve `/metrics` (and `/healthz`) until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match conn.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (code, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))
}

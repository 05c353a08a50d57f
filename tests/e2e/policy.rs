//! Policies against independent oracles: the retention rule against `restic forget` itself
//! (a real restic repository whose snapshots carry the same times as the restore points).

use coffer::policy::{Keep, retention};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn restic(repo: &Path, pw: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("restic")
        .args(["--repo"])
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .args(["--no-cache", "--quiet"])
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("running restic (scripts/test-packages.sh installs it)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two years of restore point times: the last four days hourly, with gaps (failed or
/// missed runs) and a few extra manual-looking runs in the same hour; before that about
/// one a day at a random hour, with gaps of days. A fixed seed: the same every run.
fn history() -> Vec<Timestamp> {
    let end: Timestamp = "2026-11-30T21:17:00Z".parse().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut times = BTreeSet::new();
    for h in 0..96i64 {
        if rand(10) < 2 {
            continue; // a failed run makes no restore point
        }
        let t = end.as_second() - h * 3600 - rand(3000) as i64;
        times.insert(t);
        if rand(10) == 0 {
            times.insert(t - 60 - rand(500) as i64);
        }
    }
    let mut day = 4i64;
    while day < 730 {
        let t = end.as_second() - day * 86_400 - rand(86_400) as i64;
        times.insert(t);
        day += 1 + rand(3) as i64;
    }
    times
        .into_iter()
        .map(|s| Timestamp::from_second(s).unwrap())
        .collect()
}

#[test]
fn retention_keeps_exactly_what_restic_forget_keeps() {
    coffer_tests::ensure_packages();
    let dir = tempfile::tempdir().unwrap();
    let (repo, pw, data) = (
        dir.path().join("repo"),
        dir.path().join("pw"),
        dir.path().join("data"),
    );
    std::fs::write(&pw, "oracle").unwrap();
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    restic(&repo, &pw, &["init"]);
    let times = history();
    // One snapshot per restore point, tagged with its index; a few at a time (each restic
    // run spends most of its time deriving the repository key).
    for chunk in times.iter().enumerate().collect::<Vec<_>>().chunks(4) {
        std::thread::scope(|s| {
            for (i, t) in chunk {
                let (repo, pw, data) = (&repo, &pw, &data);
                s.spawn(move || {
                    let at = t
                        .to_zoned(TimeZone::UTC)
                        .strftime("%Y-%m-%d %H:%M:%S")
                        .to_string();
                    let tag = format!("rp{i}");
                    let mut args = vec!["backup", "--time", &at, "--tag", &tag, "--host", "h"];
                    let d = data.to_str().unwrap();
                    args.push(d);
                    restic(repo, pw, &args);
                });
            }
        });
    }
    for keep in [
        Keep {
            hourly: 24,
            daily: 7,
            weekly: 4,
            monthly: 12,
            yearly: 7,
        },
        Keep {
            hourly: 0,
            daily: 3,
            weekly: 0,
            monthly: 2,
            yearly: 0,
        },
        Keep {
            hourly: 5,
            daily: 0,
            weekly: 6,
            monthly: 0,
            yearly: 1,
        },
        Keep {
            hourly: 0,
            daily: 0,
            weekly: 0,
            monthly: 30,
            yearly: 3,
        },
        Keep {
            hourly: 200,
            daily: 0,
            weekly: 0,
            monthly: 0,
            yearly: 0,
        },
    ] {
        let mut args = vec!["forget", "--dry-run", "--json", "--group-by", "host"];
        let counts = [
            ("--keep-hourly", keep.hourly),
            ("--keep-daily", keep.daily),
            ("--keep-weekly", keep.weekly),
            ("--keep-monthly", keep.monthly),
            ("--keep-yearly", keep.yearly),
        ];
        let values: Vec<String> = counts.iter().map(|(_, n)| n.to_string()).collect();
        for ((flag, n), v) in counts.iter().zip(&values) {
            if *n > 0 {
                args.push(flag);
                args.push(v);
            }
        }
        let out = restic(&repo, &pw, &args);
        let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let restic_kept: BTreeSet<usize> = groups[0]["keep"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["tags"][0].as_str().unwrap()[2..].parse().unwrap())
            .collect();
        let ours: BTreeSet<usize> = retention::apply(&times, keep, &TimeZone::UTC)
            .into_iter()
            .filter(|v| v.keep)
            .map(|v| v.index)
            .collect();
        assert_eq!(
            ours,
            restic_kept,
            "{keep:?}: coffer keeps {} restore points, restic {}",
            ours.len(),
            restic_kept.len()
        );
        assert!(
            ours.len() < times.len(),
            "{keep:?} deleted nothing: a test that cannot fail"
        );
    }
}

pub mod local {
    //! A Policy's tick in local mode against a real PostgreSQL: `coffer policy run` backs up,
    //! then retention deletes (through the Blueprint's delete action) what the Policy no
    //! longer keeps; a restore point made by hand is never touched.

    use coffer_tests::cli::Cli;
    use coffer_tests::postgres::Postgres;
    use std::path::Path;

    const CHECK: &str =
        "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x";

    /// PostgreSQL with database shop, Workload shop-db on it, and Policy gold (`@hourly`,
    /// retention `retention`).
    pub fn setup(retention: &str) -> (Cli, Postgres, tempfile::NamedTempFile) {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
        let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
        let pg = Postgres::start(Some("policy-pw")).unwrap();
        pg.psql("postgres", "CREATE DATABASE shop").unwrap();
        pg.psql(
            "shop",
            "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
        )
        .unwrap();
        let pw = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(pw.path(), "policy-pw\n").unwrap();
        let env: Vec<String> = pg
            .env()
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\""))
            .collect();
        let applied = c.apply(&format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: shop-db}}\nspec:\n  blueprint: postgres-logical\n  params: {{backup: {{databases: [shop], globals: false}}}}\n  env:\n{}\n  secrets:\n    password: {{file: {}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {{name: gold}}\nspec:\n  frequency: \"@hourly\"\n  selector: {{workloads: [shop-db]}}\n  retention: {retention}\n",
            env.join("\n"),
            pw.path().display()
        ));
        assert!(applied.ok, "{}{}", applied.stdout, applied.stderr);
        (c, pg, pw)
    }

    #[test]
    fn a_policy_run_backs_up_then_retention_deletes_what_it_no_longer_keeps() {
        let (c, pg, _pw) = setup("{hourly: 1}");
        let manual = c.ok(&["backup", "shop-db", "-o", "json"]).json()["status"]["restorePoint"]
            .as_str()
            .unwrap()
            .to_string();

        let mut made = Vec::new();
        for run in 0..3 {
            let r = c.ok(&["policy", "run", "gold", "-o", "json"]).json();
            assert_eq!(r["backups"][0]["result"], "Completed", "{r:#}");
            let rp = r["backups"][0]["restorePoint"]
                .as_str()
                .unwrap()
                .to_string();
            let deleted: Vec<&str> = r["deleted"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    assert_eq!(d["result"], "Completed", "{r:#}");
                    d["restorePoint"].as_str().unwrap()
                })
                .collect();
            // hourly: 1 keeps the newest in this hour; the previous run's goes.
            let expected: Vec<&str> = made.last().map(String::as_str).into_iter().collect();
            assert_eq!(deleted, expected, "run {run}: {r:#}");
            made.push(rp);
        }
        let rps = c.ok(&["get", "restorepoints", "-o", "json"]).json();
        let names: Vec<&str> = rps
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&manual.as_str()),
            "the manual restore point was deleted: {names:?}"
        );
        assert!(names.contains(&made[2].as_str()));
        assert!(!names.contains(&made[0].as_str()) && !names.contains(&made[1].as_str()));
        let newest = rps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metadata"]["name"] == made[2].as_str())
            .unwrap();
        assert_eq!(newest["metadata"]["labels"]["coffer.dev/policy"], "gold");
        // The deleted restore points' objects are gone; the kept ones' are there.
        let loc = c.location_dir().join("restorepoints/shop-db");
        for (rp, present) in [
            (&made[0], false),
            (&made[1], false),
            (&made[2], true),
            (&manual, true),
        ] {
            assert_eq!(loc.join(rp).exists(), present, "{rp}");
        }

        // Over the next two days: 48 ticks; with hourly: 1 only the last is left, and the
        // restore point kept now goes at the first of them.
        let s = c
            .ok(&["policy", "simulate", "gold", "--days", "2", "-o", "json"])
            .json();
        assert_eq!(s["ticks"], 48, "{s:#}");
        assert_eq!(s["futureKept"], 1, "{s:#}");
        let fates = s["existing"].as_array().unwrap();
        assert_eq!(
            fates.len(),
            1,
            "only the Policy's own restore points: {s:#}"
        );
        assert!(fates[0]["deletedAt"].is_string(), "{s:#}");
        assert_eq!(s["bytesFreed"], fates[0]["storedSize"]);

        // Changing the retention, dry run: the preview says which restore point's fate
        // changes, and nothing is stored.
        let change = c.home.path().join("gold-daily.yaml");
        std::fs::write(
            &change,
            "apiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {name: gold}\nspec:\n  frequency: \"@daily\"\n  selector: {workloads: [shop-db]}\n  retention: {daily: 3}\n",
        )
        .unwrap();
        let dry = c.ok(&["apply", "--dry-run", "-f", change.to_str().unwrap()]);
        assert!(
            dry.stdout.contains("policy gold configured (dry run)"),
            "{}",
            dry.stdout
        );
        // Hourly with hourly: 1 deletes it at the next tick; daily with daily: 3 keeps it
        // as today's for days.
        let changed = format!(
            "  {}: deleted at {} -> deleted at ",
            made[2],
            fates[0]["deletedAt"].as_str().unwrap()
        );
        assert!(dry.stdout.contains(&changed), "{}", dry.stdout);
        let stored = c.ok(&["get", "policy", "gold", "-o", "json"]).json();
        let stored = if stored.is_array() {
            stored[0].clone()
        } else {
            stored
        };
        assert_eq!(stored["spec"]["retention"]["hourly"], 1, "{stored:#}");

        // What the Policy kept restores.
        let original = pg.psql("shop", CHECK).unwrap();
        pg.psql("shop", "DELETE FROM orders WHERE id % 2 = 0")
            .unwrap();
        // To a point in time: the newest restore point taken at or before it.
        let r = c.ok(&[
            "restore",
            "shop-db",
            "--at",
            &jiff::Timestamp::now().to_string(),
        ]);
        assert!(
            r.stderr
                .contains(&format!("restoring RestorePoint {}", made[2])),
            "{}",
            r.stderr
        );
        assert_eq!(pg.psql("shop", CHECK).unwrap(), original);
        let before = c.run(&["restore", "shop-db", "--at", "2000-01-01T00:00:00Z"]);
        assert!(
            !before.ok && before.stderr.contains("no RestorePoint taken at or before"),
            "{}",
            before.stderr
        );
    }
}

mod scheduler {
    //! The local scheduler (`coffer daemon` without a cluster) on a clock the test moves
    //! (COFFER_TEST_CLOCK): 50 hours in 10-minute steps make exactly 50 backups and leave the
    //! retention's keep-set; a scheduler down for 3 hours catches up with one run and records
    //! the rest Missed; a second scheduler on the same state dir refuses to start.

    use super::local::setup;
    use coffer::policy::{Keep, retention};
    use coffer_tests::cli::Cli;
    use jiff::{SignedDuration, Timestamp};
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    /// The local scheduler; killed with the test process even when the test fails.
    fn daemon(c: &Cli, clock: &Path, log: &Path) -> Child {
        let child = c
            .command()
            .arg("daemon")
            .env("COFFER_TEST_CLOCK", clock)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        coffer_tests::reap_with_this_process(child.id(), None);
        child
    }

    /// Move the clock to `t` and wait until the scheduler has looked at the Policy then
    /// and no tick is running.
    fn step(c: &Cli, clock: &Path, t: Timestamp, log: &Path) -> serde_json::Value {
        std::fs::write(clock, t.to_string()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = c.ok(&["get", "policy", "gold", "-o", "json"]).json();
            let p = if p.is_array() { p[0].clone() } else { p };
            let seen = p["status"]["observedTime"]
                .as_str()
                .and_then(|s| s.parse::<Timestamp>().ok());
            if seen == Some(t) && p["status"]["runningTick"].is_null() {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler did not deal with {t}: {p:#}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    #[test]
    fn fifty_clock_hours_make_fifty_backups_and_a_downtime_is_caught_up_once() {
        let (c, _pg, pw) = setup("{hourly: 24, daily: 2}");
        let work = tempfile::tempdir().unwrap();
        let (clock, log) = (work.path().join("clock"), work.path().join("daemon.log"));
        // From the Policy's creation (now), at 5 past a whole 10 minutes: never on a tick.
        let start = Timestamp::from_second(Timestamp::now().as_second() / 600 * 600 + 900).unwrap();
        std::fs::write(&clock, start.to_string()).unwrap();
        let mut d = daemon(&c, &clock, &log);
        step(&c, &clock, start, &log);
        // A second scheduler for this state dir refuses, naming the first.
        let second = c
            .command()
            .arg("daemon")
            .env("COFFER_TEST_CLOCK", &clock)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&second.stderr);
        assert!(
            !second.status.success() && said.contains("already schedules this state dir"),
            "{said}"
        );

        let mut t = start;
        for _ in 0..300 {
            t += SignedDuration::from_mins(10);
            step(&c, &clock, t, &log);
        }
        // Every whole hour after the Policy was made, up to the clock: a tick each.
        let created: Timestamp = step(&c, &clock, t, &log)["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let first = Timestamp::from_second(created.as_second() / 3600 * 3600 + 3600).unwrap();
        let ticks: Vec<Timestamp> = (0..)
            .map(|h| first + SignedDuration::from_hours(h))
            .take_while(|tick| *tick <= t)
            .collect();
        assert!(ticks.len() >= 50, "{} ticks", ticks.len());
        let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
        let backups: Vec<&serde_json::Value> = sets
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("policy-gold-shop-db-")
            })
            .collect();
        assert_eq!(backups.len(), ticks.len(), "one backup per hourly tick");
        assert!(backups.iter().all(|s| s["status"]["phase"] == "Completed"));
        let keep = Keep {
            hourly: 24,
            daily: 2,
            ..Keep::default()
        };
        let expected: BTreeSet<String> = retention::apply(&ticks, keep, &jiff::tz::TimeZone::UTC)
            .into_iter()
            .filter(|v| v.keep)
            .map(|v| ticks[v.index].to_string())
            .collect();
        let left: BTreeSet<String> = c
            .ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|rp| {
                rp["metadata"]["annotations"]["coffer.dev/tick"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(left, expected);
        assert!(left.len() < 50, "retention deleted nothing");

        // Down for three hours of clock: the newest tick runs, the two before are Missed.
        let _ = d.kill();
        let _ = d.wait();
        // Three hours later, 5 minutes past the hour: the ticks of the two hours before
        // were slept through, the newest is 5 minutes late (within startingDeadline).
        t = Timestamp::from_second(t.as_second() / 3600 * 3600).unwrap()
            + SignedDuration::from_mins(3 * 60 + 5);
        std::fs::write(&clock, t.to_string()).unwrap();
        d = daemon(&c, &clock, &log);
        let p = step(&c, &clock, t, &log);
        let runs = p["status"]["runs"].as_array().unwrap();
        let tail: Vec<(String, u64)> = runs[runs.len() - 2..]
            .iter()
            .map(|r| {
                (
                    r["result"].as_str().unwrap().to_string(),
                    r["count"].as_u64().unwrap_or(1),
                )
            })
            .collect();
        assert_eq!(
            tail,
            [("Missed".to_string(), 2), ("Completed".to_string(), 1)],
            "{p:#}"
        );

        // Compliance on the same clock: protected; then a tick that fails (the server
        // refuses the password) makes it LastRunFailed until a tick succeeds again; a pause
        // makes it Paused; a Workload no Policy selects is Unmanaged.
        let state = |c: &Cli| -> (String, String) {
            let rows = c
                .command()
                .args(["get", "compliance", "-o", "json"])
                .env("COFFER_TEST_CLOCK", &clock)
                .output()
                .unwrap();
            let rows: serde_json::Value = serde_json::from_slice(&rows.stdout).unwrap();
            let row = rows
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["workload"] == "shop-db")
                .unwrap()
                .clone();
            (
                row["state"].as_str().unwrap().to_string(),
                row["reason"].as_str().unwrap_or_default().to_string(),
            )
        };
        assert_eq!(state(&c), ("Compliant".into(), String::new()));
        std::fs::write(pw.path(), "not-the-password\n").unwrap();
        t += SignedDuration::from_hours(1);
        step(&c, &clock, t, &log);
        assert_eq!(state(&c), ("NonCompliant".into(), "LastRunFailed".into()));
        std::fs::write(pw.path(), "policy-pw\n").unwrap();
        t += SignedDuration::from_hours(1);
        step(&c, &clock, t, &log);
        assert_eq!(state(&c), ("Compliant".into(), String::new()));
        // describe: the runs with the catch-up, each restore point with why it is kept.
        let described = c
            .command()
            .args(["describe", "policy", "gold"])
            .env("COFFER_TEST_CLOCK", &clock)
            .output()
            .unwrap();
        let described = String::from_utf8_lossy(&described.stdout);
        assert!(
            described.contains("Missed x2") && described.contains("Failed: "),
            "{described}"
        );
        assert!(described.contains("kept (newest, hourly"), "{described}");
        let policy = c.ok(&["get", "policy", "gold", "-o", "yaml"]).stdout;
        assert!(
            c.apply(&policy.replace("  retention:", "  paused: true\n  retention:"))
                .ok
        );
        assert_eq!(state(&c), ("NonCompliant".into(), "Paused".into()));
        let _ = d.kill();
        let _ = d.wait();
    }
}

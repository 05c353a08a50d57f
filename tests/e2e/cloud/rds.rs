//! The built-in `rds` Blueprint against moto's RDS (its API, not a database): a snapshot
//! backup records what the instance was; a restore makes a new instance beside the live
//! one with the recorded class and subnet group, and `swap` trades their names; a delete
//! removes the snapshot (and moto's automated snapshot is left alone); the Aurora cluster
//! path; an unknown instance fails clearly with no restore point; every call is signed by
//! the host with the Signer (the plugin sees no key).

use super::cli;
use coffer_tests::cli::Cli;
use coffer_tests::s3::{Moto, xml_all};
use std::io::{Read, Write};

/// An RDS Query API call straight to moto (setting up what the test backs up).
pub(super) fn rds(moto: &Moto, form: &str) -> String {
    moto.rds(form)
}

/// A Query API call to moto for `service`.
fn query(moto: &Moto, service: &str, body: &str) -> String {
    moto.query(service, body)
}

fn setup(endpoint: &str, c: &Cli, params: &str) {
    let keys = c.home.path().join("aws-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("id"), "AKIDCOFFERTEST").unwrap();
    std::fs::write(keys.join("secret"), "coffer-rds-test-secret").unwrap();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: aws}}\nspec:\n  type: aws-sigv4\n  region: us-east-1\n  endpoint: {e}\n  credentials:\n    accessKeyId: {{file: {k}/id}}\n    secretAccessKey: {{file: {k}/secret}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: db}}\nspec:\n  blueprint: rds\n  params:\n    backup: {{{params}, region: us-east-1, apiEndpoint: {e}}}\n",
        e = endpoint,
        k = keys.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

#[test]
fn an_instance_is_snapshotted_restored_beside_itself_swapped_and_deleted() {
    let moto = Moto::start();
    let ec2 = |form: &str| query(&moto, "ec2", &format!("{form}&Version=2016-11-15"));
    let vpc = xml_all(&ec2("Action=CreateVpc&CidrBlock=10.0.0.0/16"), "vpcId")[0].clone();
    let subnet = xml_all(
        &ec2(&format!(
            "Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.1.0/24"
        )),
        "subnetId",
    )[0]
    .clone();
    let group = rds(
        &moto,
        &format!(
            "Action=CreateDBSubnetGroup&DBSubnetGroupName=shop-net&DBSubnetGroupDescription=x&SubnetIds.SubnetIdentifier.1={subnet}"
        ),
    );
    assert!(group.contains("shop-net"), "{group}");
    let created = rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.m5.large&Engine=postgres&EngineVersion=15.4&AllocatedStorage=20&MasterUsername=admin&MasterUserPassword=secret123&DBSubnetGroupName=shop-net&Port=5433&BackupRetentionPeriod=1",
    );
    assert!(
        created.contains("<DBInstanceIdentifier>shop</DBInstanceIdentifier>"),
        "{created}"
    );
    let c = cli();
    setup(&moto.endpoint(), &c, "instance: shop");

    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    let snap = st["outputs"]["snapshot"].as_str().unwrap().to_string();
    assert!(snap.starts_with("coffer-shop-"), "{snap}");
    assert_eq!(st["outputs"]["class"], "db.m5.large");
    let snaps = rds(
        &moto,
        "Action=DescribeDBSnapshots&DBInstanceIdentifier=shop",
    );
    assert!(
        xml_all(&snaps, "DBSnapshotIdentifier").contains(&snap),
        "{snaps}"
    );
    // Every call went through the host's signer, and the audit says which API.
    let set = c.ok(&[
        "describe",
        "actionset",
        b["metadata"]["name"].as_str().unwrap(),
    ]);
    assert!(
        set.stdout.contains("action=CreateDBSnapshot status=200"),
        "{}",
        set.stdout
    );

    let rp = st["restorePoint"].as_str().unwrap();
    let r = c.ok(&["restore", "db", "--from", rp, "-o", "json"]).json();
    assert_eq!(r["status"]["phase"], "Completed", "{r:#}");
    let new = r["status"]["outputs"]["instance"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(new.starts_with("shop-restored-"), "{new}");
    assert!(
        r["status"]["outputs"]["endpoint"]
            .as_str()
            .unwrap()
            .ends_with(":5433")
    );
    let twin = rds(
        &moto,
        &format!("Action=DescribeDBInstances&DBInstanceIdentifier={new}"),
    );
    assert_eq!(xml_all(&twin, "DBInstanceClass"), ["db.m5.large"], "{twin}");
    assert_eq!(xml_all(&twin, "DBSubnetGroupName"), ["shop-net"], "{twin}");
    let live = rds(
        &moto,
        "Action=DescribeDBInstances&DBInstanceIdentifier=shop",
    );
    assert!(
        live.contains("<DBInstanceStatus>available</DBInstanceStatus>"),
        "the live instance was touched: {live}"
    );

    // Swap: the restored instance takes the live one's name; the live one is kept.
    let s = c
        .ok(&[
            "restore",
            "db",
            "--from",
            rp,
            "-p",
            "swap=true",
            "-p",
            "newName=shop-next",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(s["status"]["phase"], "Completed", "{s:#}");
    let previous = s["status"]["outputs"]["previous"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s["status"]["outputs"]["instance"], "shop");
    let all = rds(&moto, "Action=DescribeDBInstances");
    let ids = xml_all(&all, "DBInstanceIdentifier");
    assert!(
        ids.contains(&previous) && ids.contains(&"shop".to_string()),
        "{ids:?}"
    );
    assert!(!ids.contains(&"shop-next".to_string()), "{ids:?}");

    // Delete: the snapshot goes; moto's automated snapshot of the instance stays.
    let d = c.ok(&["delete", rp, "-o", "json"]).json();
    assert_eq!(d["status"]["phase"], "Completed", "{d:#}");
    let left = xml_all(
        &rds(&moto, "Action=DescribeDBSnapshots"),
        "DBSnapshotIdentifier",
    );
    assert!(!left.contains(&snap), "{left:?}");
    assert!(
        left.iter().any(|s| s.starts_with("rds:shop-")),
        "the automated snapshot went too: {left:?}"
    );
}

#[test]
fn an_aurora_cluster_is_snapshotted_and_restored_as_a_new_cluster() {
    let moto = Moto::start();
    let created = rds(
        &moto,
        "Action=CreateDBCluster&DBClusterIdentifier=orders&Engine=aurora-postgresql&EngineVersion=15.4&MasterUsername=admin&MasterUserPassword=secret123",
    );
    assert!(created.contains("orders"), "{created}");
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=orders-1&DBClusterIdentifier=orders&DBInstanceClass=db.r6g.large&Engine=aurora-postgresql",
    );
    let c = cli();
    setup(&moto.endpoint(), &c, "cluster: orders");
    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    assert_eq!(b["status"]["phase"], "Completed", "{b:#}");
    assert_eq!(b["status"]["outputs"]["class"], "db.r6g.large");
    let rp = b["status"]["restorePoint"].as_str().unwrap();
    let r = c.ok(&["restore", "db", "--from", rp, "-o", "json"]).json();
    assert_eq!(r["status"]["phase"], "Completed", "{r:#}");
    let new = r["status"]["outputs"]["instance"].as_str().unwrap();
    let clusters = rds(&moto, "Action=DescribeDBClusters");
    assert!(
        xml_all(&clusters, "DBClusterIdentifier").contains(&new.to_string()),
        "{clusters}"
    );
    let writer = rds(
        &moto,
        &format!("Action=DescribeDBInstances&DBInstanceIdentifier={new}-1"),
    );
    assert_eq!(
        xml_all(&writer, "DBInstanceClass"),
        ["db.r6g.large"],
        "{writer}"
    );
    c.ok(&["delete", rp]);
    let snaps = rds(&moto, "Action=DescribeDBClusterSnapshots");
    assert!(
        !snaps.contains(b["status"]["outputs"]["snapshot"].as_str().unwrap()),
        "{snaps}"
    );
}

#[test]
fn an_unknown_instance_fails_clearly_and_records_nothing() {
    let moto = Moto::start();
    let c = cli();
    setup(&moto.endpoint(), &c, "instance: nosuch");
    let r = c.run(&["backup", "db"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("DBInstanceNotFound") && r.stderr.contains("nosuch"),
        "{}",
        r.stderr
    );
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Read one HTTP message (head and Content-Length body) from `s`.
fn read_message(s: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// A proxy in front of moto that answers its first requests as a throttling AWS would
/// (400 Throttling, then 503), then passes requests through; how many it refused.
fn throttling_proxy(
    moto_port: u16,
    refuse: usize,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (port, refused, _) = proxy(moto_port, refuse, false);
    (port, refused)
}

/// The heads of the requests a proxy passed on, with their bodies' first 200 bytes.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`throttling_proxy`]; with `stall`, every snapshot it passes on is still being created
/// (a big database's snapshot takes hours). Also what it passed on.
fn proxy(
    moto_port: u16,
    refuse: usize,
    stall: bool,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            while let Some((head, body)) = read_message(&mut client) {
                let n = count.load(Ordering::SeqCst);
                if n < refuse {
                    count.store(n + 1, Ordering::SeqCst);
                    let (status, code) = if n.is_multiple_of(2) {
                        ("400 Bad Request", "Throttling")
                    } else {
                        ("503 Service Unavailable", "ServiceUnavailable")
                    };
                    let xml = format!(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
                    );
                    let _ = write!(
                        client,
                        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    continue;
                }
                let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                record.lock().unwrap().push(format!("{head}{start}"));
                let mut up = std::net::TcpStream::connect(("127.0.0.1", moto_port)).unwrap();
                up.write_all(head.as_bytes()).unwrap();
                up.write_all(&body).unwrap();
                let Some((rhead, mut rbody)) = read_message(&mut up) else {
                    break;
                };
                if stall && body.windows(26).any(|w| w == b"Action=DescribeDBSnapshots") {
                    // The same length: the head's Content-Length stays right.
                    let text = String::from_utf8_lossy(&rbody)
                        .replace("<Status>available</Status>", "<Status>creating </Status>");
                    rbody = text.into_bytes();
                }
                let _ = client.write_all(rhead.as_bytes());
                let _ = client.write_all(&rbody);
            }
        }
    });
    (port, refused, seen)
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let moto = Moto::start();
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=mysql&AllocatedStorage=20&MasterUsername=admin&MasterUserPassword=secret123",
    );
    let (port, refused) = throttling_proxy(moto.port, 3);
    let c = cli();
    setup(&format!("http://127.0.0.1:{port}"), &c, "instance: shop");
    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    assert_eq!(b["status"]["phase"], "Completed", "{b:#}");
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 3);
    let snaps = rds(
        &moto,
        "Action=DescribeDBSnapshots&DBInstanceIdentifier=shop",
    );
    assert!(
        snaps.contains(b["status"]["outputs"]["snapshot"].as_str().unwrap()),
        "{snaps}"
    );
}

#[test]
fn a_snapshot_no_restore_point_names_is_deleted_even_when_coffer_is_killed() {
    let moto = Moto::start();
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=postgres&AllocatedStorage=20&MasterUsername=admin&MasterUserPassword=secret123",
    );
    let (port, _, _) = proxy(moto.port, 0, true);
    let c = cli();
    setup(&format!("http://127.0.0.1:{port}"), &c, "instance: shop");
    let coffers = || {
        let mut s = xml_all(
            &rds(&moto, "Action=DescribeDBSnapshots"),
            "DBSnapshotIdentifier",
        );
        s.retain(|s| s.starts_with("coffer-"));
        s
    };
    let mut run = c.command().args(["backup", "db"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while coffers().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no snapshot was made");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // RDS is still copying (as the proxy says): coffer dies.
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(coffers().len(), 1);
    // The next coffer command sends the guard's delete.
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    assert!(coffers().is_empty(), "{:?}", coffers());
    let set = &sets[0]["status"];
    assert_eq!(set["phase"], "Failed", "{sets:#}");
    assert_eq!(set["guards"][0]["firedBy"], "recovery", "{sets:#}");
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn without_keys_a_signer_exchanges_a_web_identity_token_at_sts() {
    let moto = Moto::start();
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=postgres&AllocatedStorage=20&MasterUsername=admin&MasterUserPassword=secret123",
    );
    let (port, _, seen) = proxy(moto.port, 0, false);
    let endpoint = format!("http://127.0.0.1:{port}");
    let c = cli();
    let token = c.home.path().join("token");
    // What EKS mounts for a service account: an OIDC token (any JWT-shaped text for moto).
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb2ZmZXIifQ.c2lnbmF0dXJl\n",
    )
    .unwrap();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: aws}}\nspec: {{type: aws-sigv4, region: us-east-1, endpoint: \"{endpoint}\"}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: db}}\nspec:\n  blueprint: rds\n  params:\n    backup: {{instance: shop, region: us-east-1, apiEndpoint: \"{endpoint}\"}}\n"
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let with_identity = |token: &std::path::Path| {
        let mut cmd = c.command();
        cmd.args(["backup", "db", "-o", "json"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", token)
            .env(
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/coffer-backup",
            )
            .env("AWS_ENDPOINT_URL_STS", &endpoint);
        cmd.output().unwrap()
    };
    let out = with_identity(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["status"]["phase"], "Completed", "{b:#}");
    // STS was asked first, unsigned, with the token; the RDS calls were then signed with
    // the temporary keys it gave (an ASIA key id and a session token).
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen[0].contains("Action=AssumeRoleWithWebIdentity"),
        "{seen:#?}"
    );
    assert!(
        !seen[0].to_ascii_lowercase().contains("authorization:"),
        "{}",
        seen[0]
    );
    let rds_calls: Vec<&String> = seen
        .iter()
        .filter(|h| h.contains("/rds/aws4_request"))
        .collect();
    assert!(!rds_calls.is_empty(), "{seen:#?}");
    for h in rds_calls {
        let lower = h.to_ascii_lowercase();
        assert!(lower.contains("credential=asia"), "{h}");
        assert!(lower.contains("x-amz-security-token:"), "{h}");
    }
    // A token file that is not there fails before the plugin runs, naming it.
    let out = with_identity(std::path::Path::new("/nonexistent/token"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AWS_WEB_IDENTITY_TOKEN_FILE /nonexistent/token"),
        "{err}"
    );
}

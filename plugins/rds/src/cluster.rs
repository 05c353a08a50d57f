//! Aurora DB clusters: a cluster snapshot, and a restore as a new cluster with one writer
//! instance of the recorded class.

use crate::api::{Rds, parse, text};
use crate::{Recorded, instance, wait};
use coffer_plugin_sdk::Error;

/// The cluster as DescribeDBClusters tells it, with its writer's class; and its status.
pub fn describe(api: &Rds, id: &str) -> Result<(Recorded, String, Option<String>), Error> {
    let xml = api.call(
        "DescribeDBClusters",
        &[("DBClusterIdentifier", id.to_string())],
    )?;
    let doc = parse(&xml)?;
    let c = doc
        .descendants()
        .find(|n| n.has_tag_name("DBCluster"))
        .ok_or_else(|| Error::NotFound(format!("RDS has no DB cluster {id}")))?;
    let writer = c
        .descendants()
        .filter(|n| n.has_tag_name("DBClusterMember"))
        .find(|m| text(*m, "IsClusterWriter").as_deref() == Some("true"))
        .or_else(|| c.descendants().find(|n| n.has_tag_name("DBClusterMember")))
        .and_then(|m| text(m, "DBInstanceIdentifier"));
    let class = match &writer {
        Some(w) => instance::describe(api, w)?.recorded.class,
        None => String::new(),
    };
    let port = text(c, "Port").and_then(|p| p.parse().ok());
    let endpoint = text(c, "Endpoint").map(|e| match port {
        Some(p) => format!("{e}:{p}"),
        None => e,
    });
    Ok((
        Recorded {
            kind: "cluster".into(),
            source: id.to_string(),
            snapshot: String::new(),
            engine: text(c, "Engine").unwrap_or_default(),
            engine_version: text(c, "EngineVersion").unwrap_or_default(),
            class,
            subnet_group: text(c, "DBSubnetGroup"),
            security_groups: c
                .descendants()
                .filter(|n| n.has_tag_name("VpcSecurityGroupId"))
                .filter_map(|n| n.text().map(str::to_string))
                .collect(),
            port,
            parameter_group: text(c, "DBClusterParameterGroup"),
            option_group: None,
            multi_az: text(c, "MultiAZ").as_deref() == Some("true"),
            cluster_instance: writer,
            region: String::new(),
            api_endpoint: None,
            master_user: text(c, "MasterUsername"),
        },
        text(c, "Status").unwrap_or_default(),
        endpoint,
    ))
}

pub fn snapshot(api: &Rds, id: &str, snapshot: &str, minutes: u64) -> Result<(), Error> {
    api.call(
        "CreateDBClusterSnapshot",
        &[
            ("DBClusterIdentifier", id.to_string()),
            ("DBClusterSnapshotIdentifier", snapshot.to_string()),
            ("Tags.Tag.1.Key", "managed-by".into()),
            ("Tags.Tag.1.Value", "coffer".into()),
        ],
    )?;
    wait(&format!("cluster snapshot {snapshot}"), minutes, || {
        let xml = api.call(
            "DescribeDBClusterSnapshots",
            &[("DBClusterSnapshotIdentifier", snapshot.to_string())],
        )?;
        let doc = parse(&xml)?;
        Ok((text(doc.root(), "Status").as_deref() == Some("available")).then_some(()))
    })
}

pub fn delete_snapshot(api: &Rds, snapshot: &str) -> Result<(), Error> {
    match api.call(
        "DeleteDBClusterSnapshot",
        &[("DBClusterSnapshotIdentifier", snapshot.to_string())],
    ) {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Cluster `target` from `r`'s snapshot, with one writer `target-1` of the recorded
/// class; the cluster's endpoint once both are available.
pub fn restore(api: &Rds, r: &Recorded, target: &str, minutes: u64) -> Result<String, Error> {
    let mut params: Vec<(String, String)> = vec![
        ("DBClusterIdentifier".into(), target.to_string()),
        ("SnapshotIdentifier".into(), r.snapshot.clone()),
        ("Engine".into(), r.engine.clone()),
    ];
    if !r.engine_version.is_empty() {
        params.push(("EngineVersion".into(), r.engine_version.clone()));
    }
    params.extend(r.placement());
    api.call("RestoreDBClusterFromSnapshot", &params)?;
    let writer = format!("{target}-1");
    api.call(
        "CreateDBInstance",
        &[
            ("DBInstanceIdentifier", writer.clone()),
            ("DBClusterIdentifier", target.to_string()),
            ("DBInstanceClass", r.class.clone()),
            ("Engine", r.engine.clone()),
        ],
    )?;
    instance::wait_available(api, &writer, minutes)?;
    wait(&format!("cluster {target}"), minutes, || {
        let (_, status, endpoint) = describe(api, target)?;
        Ok((status == "available").then(|| endpoint.unwrap_or_default()))
    })
}

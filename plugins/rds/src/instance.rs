//! DB instances: what an instance is (recorded with its snapshot so a restore can make its
//! twin), snapshots, and restores beside it.

use crate::api::{Rds, parse, text};
use crate::{Recorded, wait};
use coffer_plugin_sdk::{Error, log};

/// An instance as DescribeDBInstances tells it.
pub struct Instance {
    pub status: String,
    pub endpoint: Option<String>,
    pub recorded: Recorded,
}

pub fn describe(api: &Rds, id: &str) -> Result<Instance, Error> {
    let xml = api.call(
        "DescribeDBInstances",
        &[("DBInstanceIdentifier", id.to_string())],
    )?;
    let doc = parse(&xml)?;
    let db = doc
        .descendants()
        .find(|n| n.has_tag_name("DBInstance"))
        .ok_or_else(|| Error::NotFound(format!("RDS has no DB instance {id}")))?;
    let all = |tag: &str| -> Vec<String> {
        db.descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter_map(|n| n.text().map(str::to_string))
            .collect()
    };
    let endpoint = db
        .children()
        .find(|n| n.has_tag_name("Endpoint"))
        .and_then(|e| Some(format!("{}:{}", text(e, "Address")?, text(e, "Port")?)));
    Ok(Instance {
        status: text(db, "DBInstanceStatus").unwrap_or_default(),
        endpoint,
        recorded: Recorded {
            kind: "instance".into(),
            source: id.to_string(),
            snapshot: String::new(),
            engine: text(db, "Engine").unwrap_or_default(),
            engine_version: text(db, "EngineVersion").unwrap_or_default(),
            class: text(db, "DBInstanceClass").unwrap_or_default(),
            subnet_group: db
                .children()
                .find(|n| n.has_tag_name("DBSubnetGroup"))
                .and_then(|g| text(g, "DBSubnetGroupName")),
            security_groups: all("VpcSecurityGroupId"),
            port: db
                .children()
                .find(|n| n.has_tag_name("Endpoint"))
                .and_then(|e| text(e, "Port"))
                .and_then(|p| p.parse().ok()),
            parameter_group: all("DBParameterGroupName").into_iter().next(),
            option_group: all("OptionGroupName").into_iter().next(),
            multi_az: text(db, "MultiAZ").as_deref() == Some("true"),
            cluster_instance: None,
            region: String::new(),
            api_endpoint: None,
            master_user: text(db, "MasterUsername"),
        },
    })
}

/// Snapshot instance `id` as `snapshot`, tagged, and wait until it is available.
pub fn snapshot(
    api: &Rds,
    id: &str,
    snapshot: &str,
    tags: &[(&str, String)],
    minutes: u64,
) -> Result<(), Error> {
    let mut params = vec![
        ("DBInstanceIdentifier", id.to_string()),
        ("DBSnapshotIdentifier", snapshot.to_string()),
    ];
    let keys: Vec<(String, String)> = tags
        .iter()
        .enumerate()
        .flat_map(|(i, (k, v))| {
            [
                (format!("Tags.Tag.{}.Key", i + 1), k.to_string()),
                (format!("Tags.Tag.{}.Value", i + 1), v.clone()),
            ]
        })
        .collect();
    params.extend(keys.iter().map(|(k, v)| (k.as_str(), v.clone())));
    api.call("CreateDBSnapshot", &params)?;
    wait(&format!("snapshot {snapshot}"), minutes, || {
        let xml = api.call(
            "DescribeDBSnapshots",
            &[("DBSnapshotIdentifier", snapshot.to_string())],
        )?;
        let doc = parse(&xml)?;
        let status = text(doc.root(), "Status").unwrap_or_default();
        let pct = text(doc.root(), "PercentProgress").and_then(|p| p.parse::<u64>().ok());
        match status.as_str() {
            "available" => Ok(Some(())),
            "failed" | "error" => Err(Error::Remote(coffer_plugin_sdk::RemoteError {
                system: "rds".into(),
                code: None,
                message: format!("snapshot {snapshot} ended {status}"),
                retryable: false,
            })),
            _ => {
                if let Some(p) = pct {
                    log::progress("snapshot", p, Some(100));
                }
                Ok(None)
            }
        }
    })
}

pub fn delete_snapshot(api: &Rds, snapshot: &str) -> Result<(), Error> {
    match api.call(
        "DeleteDBSnapshot",
        &[("DBSnapshotIdentifier", snapshot.to_string())],
    ) {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new instance `target` from `r`'s snapshot with `r`'s settings; its endpoint once
/// available.
pub fn restore(api: &Rds, r: &Recorded, target: &str, minutes: u64) -> Result<String, Error> {
    let mut params: Vec<(String, String)> = [
        ("DBInstanceIdentifier", target.to_string()),
        ("DBSnapshotIdentifier", r.snapshot.clone()),
        ("DBInstanceClass", r.class.clone()),
        ("MultiAZ", r.multi_az.to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    params.extend(r.placement());
    // The engine's default groups (`default.postgres15`, `default:postgres-15`) are what a
    // new instance gets anyway; only the account's own are named.
    if let Some(g) = r
        .parameter_group
        .as_ref()
        .filter(|g| !g.starts_with("default."))
    {
        params.push(("DBParameterGroupName".into(), g.clone()));
    }
    if let Some(g) = r
        .option_group
        .as_ref()
        .filter(|g| !g.starts_with("default:"))
    {
        params.push(("OptionGroupName".into(), g.clone()));
    }
    api.call("RestoreDBInstanceFromDBSnapshot", &params)?;
    wait_available(api, target, minutes)
}

/// Until instance `id` is available; its endpoint.
pub fn wait_available(api: &Rds, id: &str, minutes: u64) -> Result<String, Error> {
    wait(&format!("instance {id}"), minutes, || {
        let i = describe(api, id)?;
        Ok((i.status == "available").then(|| i.endpoint.unwrap_or_default()))
    })
}

/// Rename instance `from` to `to`, and wait until it answers to its new name.
pub fn rename(api: &Rds, from: &str, to: &str, minutes: u64) -> Result<String, Error> {
    api.call(
        "ModifyDBInstance",
        &[
            ("DBInstanceIdentifier", from.to_string()),
            ("NewDBInstanceIdentifier", to.to_string()),
            ("ApplyImmediately", "true".into()),
        ],
    )?;
    wait(
        &format!("instance {from} renamed {to}"),
        minutes,
        || match describe(api, to) {
            Ok(i) if i.status == "available" => Ok(Some(i.endpoint.unwrap_or_default())),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        },
    )
}

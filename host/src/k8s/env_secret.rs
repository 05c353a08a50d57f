//! A Blueprint secret taken from the subject container's environment (`fromEnv`), the way a
//! Helm chart hands a database its password: a literal `value`, a `valueFrom.secretKeyRef`,
//! an `envFrom` Secret, or a `NAME_FILE` variable naming a file of a mounted Secret volume.
//! Only the pod template is read here; the Secret itself is read by the caller, in the
//! workload's namespace (a container can only reference Secrets of its own namespace).

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Where a variable's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// Written in the template.
    Literal(String),
    /// A key of a Secret of the workload's namespace.
    Secret { name: String, key: String },
}

/// The first of `names` the container sets, and where its value is: `NAME` itself, else
/// `NAME_FILE` pointing into a Secret volume. `Ok(None)` when none is set; an error when
/// one is set in a way coffer cannot follow (a ConfigMap, a field, a file not from a
/// Secret), naming it.
pub fn find(
    spec: &PodSpec,
    c: &Container,
    names: &[String],
) -> Result<Option<(String, EnvSource)>, String> {
    for name in names {
        if let Some(s) = variable(c, name)? {
            return Ok(Some((name.clone(), s)));
        }
        let file_var = format!("{name}_FILE");
        if let Some(path) = literal(c, &file_var) {
            let s = secret_file(spec, c, &path).map_err(|e| format!("{file_var}={path}: {e}"))?;
            return Ok(Some((file_var, s)));
        }
    }
    Ok(None)
}

/// `name` as set by `env` (the last entry wins, as in the kubelet) or an `envFrom` Secret.
fn variable(c: &Container, name: &str) -> Result<Option<EnvSource>, String> {
    if let Some(v) = c.env.iter().flatten().rev().find(|v| v.name == name) {
        if let Some(value) = &v.value {
            return Ok(Some(EnvSource::Literal(value.clone())));
        }
        let from = v.value_from.as_ref();
        if let Some(r) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            return Ok(Some(EnvSource::Secret {
                name: r.name.clone(),
                key: r.key.clone(),
            }));
        }
        if from.is_some() {
            return Err(format!(
                "{name} comes from a ConfigMap or a field, not a Secret: annotate the workload secret.coffer.dev/<name>=<secret>/<key> instead"
            ));
        }
        return Ok(Some(EnvSource::Literal(String::new())));
    }
    // envFrom: later sources win; only Secrets can carry a password here.
    for from in c.env_from.iter().flatten().rev() {
        let Some(r) = &from.secret_ref else { continue };
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(key) = name.strip_prefix(prefix)
            && !key.is_empty()
        {
            // Whether the Secret has the key is only known once it is read.
            return Ok(Some(EnvSource::Secret {
                name: r.name.clone(),
                key: key.to_string(),
            }));
        }
    }
    Ok(None)
}

fn literal(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .rev()
        .find(|v| v.name == name)
        .and_then(|v| v.value.clone())
}

/// The Secret key behind file `path` of the container: the mount holding it (the longest
/// mountPath that contains it) must be of a `secret` volume.
fn secret_file(spec: &PodSpec, c: &Container, path: &str) -> Result<EnvSource, String> {
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            let mp = clean(&m.mount_path);
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| clean(&m.mount_path).len())
        .ok_or("no volume of the container holds that file")?;
    let mp = clean(&mount.mount_path);
    let rest = path[mp.len()..].trim_start_matches('/');
    // With subPath, the mount is one entry of the volume.
    let rel = match (mount.sub_path.as_deref().filter(|s| !s.is_empty()), rest) {
        (Some(sub), "") => sub.to_string(),
        (Some(sub), rest) => format!("{}/{rest}", sub.trim_end_matches('/')),
        (None, rest) => rest.to_string(),
    };
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .ok_or_else(|| format!("volume {:?} is not in the pod template", mount.name))?;
    let secret = volume.secret.as_ref().ok_or_else(|| {
        format!(
            "volume {:?} is not a Secret volume: annotate the workload secret.coffer.dev/<name>=<secret>/<key> instead",
            mount.name
        )
    })?;
    let name = secret
        .secret_name
        .clone()
        .ok_or_else(|| format!("Secret volume {:?} names no Secret", mount.name))?;
    let key = match &secret.items {
        Some(items) if !items.is_empty() => items
            .iter()
            .find(|i| i.path == rel)
            .map(|i| i.key.clone())
            .ok_or_else(|| format!("Secret volume {:?} maps no key to {rel:?}", mount.name))?,
        _ if rel.is_empty() || rel.contains('/') => {
            return Err(format!(
                "{rel:?} is not a key file of Secret volume {:?}",
                mount.name
            ));
        }
        _ => rel,
    };
    Ok(EnvSource::Secret { name, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::exec::choose_container as container;

    fn spec(y: &str) -> PodSpec {
        serde_yaml_ng::from_str(y).unwrap()
    }

    const BITNAMI: &str = r#"
containers:
  - name: postgresql
    env:
      - {name: POSTGRES_USER, value: testuser}
      - {name: POSTGRES_PASSWORD_FILE, value: /opt/bitnami/postgresql/secrets/password}
      - {name: POSTGRES_POSTGRES_PASSWORD_FILE, value: /opt/bitnami/postgresql/secrets/postgres-password}
    volumeMounts:
      - {name: empty-dir, mountPath: /opt/bitnami/postgresql/conf, subPath: app-conf-dir}
      - {name: postgresql-password, mountPath: /opt/bitnami/postgresql/secrets/}
  - name: metrics
volumes:
  - {name: empty-dir, emptyDir: {}}
  - {name: postgresql-password, secret: {secretName: rel-postgresql}}
"#;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_password_file_of_a_secret_volume_is_its_key() {
        let s = spec(BITNAMI);
        let c = container(&s, None, None).unwrap();
        let found = find(
            &s,
            c,
            &names(&["POSTGRES_POSTGRES_PASSWORD", "POSTGRES_PASSWORD"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            found,
            (
                "POSTGRES_POSTGRES_PASSWORD_FILE".into(),
                EnvSource::Secret {
                    name: "rel-postgresql".into(),
                    key: "postgres-password".into()
                }
            )
        );
        assert_eq!(find(&s, c, &names(&["REDIS_PASSWORD"])).unwrap(), None);
        let metrics = container(&s, Some("metrics"), None).unwrap();
        assert_eq!(
            find(&s, metrics, &names(&["POSTGRES_PASSWORD"])).unwrap(),
            None
        );
        assert!(
            container(&s, Some("nope"), None)
                .unwrap_err()
                .contains("metrics")
        );
    }

    #[test]
    fn secret_key_refs_env_from_items_and_literals_resolve_and_the_rest_is_named() {
        let s = spec(
            r#"
containers:
  - name: db
    env:
      - {name: A, valueFrom: {secretKeyRef: {name: s1, key: k1}}}
      - {name: B, value: plain}
      - {name: C, valueFrom: {configMapKeyRef: {name: cm, key: k}}}
      - {name: D_FILE, value: /etc/creds/pw}
      - {name: E_FILE, value: /etc/conf/pw}
      - {name: F_FILE, value: /etc/creds/other}
    envFrom:
      - {prefix: APP_, secretRef: {name: s2}}
    volumeMounts:
      - {name: creds, mountPath: /etc/creds}
      - {name: conf, mountPath: /etc/conf}
volumes:
  - {name: creds, secret: {secretName: s3, items: [{key: db-password, path: pw}]}}
  - {name: conf, configMap: {name: cm}}
"#,
        );
        let c = &s.containers[0];
        let one = |n: &str| find(&s, c, &names(&[n]));
        let secret = |name: &str, key: &str| EnvSource::Secret {
            name: name.into(),
            key: key.into(),
        };
        assert_eq!(one("A").unwrap().unwrap().1, secret("s1", "k1"));
        assert_eq!(
            one("B").unwrap().unwrap().1,
            EnvSource::Literal("plain".into())
        );
        assert!(one("C").unwrap_err().contains("ConfigMap"));
        assert_eq!(one("D").unwrap().unwrap().1, secret("s3", "db-password"));
        assert!(one("E").unwrap_err().contains("not a Secret volume"));
        assert!(one("F").unwrap_err().contains("maps no key"));
        assert_eq!(one("APP_TOKEN").unwrap().unwrap().1, secret("s2", "TOKEN"));
        assert_eq!(one("OTHER").unwrap(), None);
        // The first name that is set wins.
        assert_eq!(
            find(&s, c, &names(&["OTHER", "B", "A"]))
                .unwrap()
                .unwrap()
                .0,
            "B"
        );
    }
}

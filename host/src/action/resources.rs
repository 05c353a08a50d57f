//! Looking resources up (with the built-in Blueprints and the default Profile behind the
//! catalog) and applying documents.

use super::Coffer;
use crate::limits::EffectiveLimits;
use crate::model::{
    Blueprint, Document, Kind, Profile, ProfileSpec, RestorePoint, Workload, parse_documents,
};
use anyhow::{Context, Result, anyhow, bail};

/// Where a resource comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Catalog,
    Builtin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Catalog => "catalog",
            Source::Builtin => "builtin",
        }
    }
}

pub const DEFAULT_PROFILE: &str = "default";

impl Coffer {
    fn builtin_blueprints(&self) -> Result<Vec<Blueprint>> {
        let mut out = Vec::new();
        for (name, yaml) in crate::builtin::BUILTIN_BLUEPRINTS {
            let docs = parse_documents(&format!("builtin blueprint {name}"), yaml)?;
            for d in docs {
                if let Document::Blueprint(b) = d {
                    out.push(*b);
                }
            }
        }
        Ok(out)
    }

    /// The built-in Blueprint `name`, if there is one.
    pub fn builtin_blueprint(&self, name: &str) -> Result<Option<Blueprint>> {
        Ok(self
            .builtin_blueprints()?
            .into_iter()
            .find(|b| b.name() == name))
    }

    /// A Blueprint from the catalog, else a built-in one.
    pub fn blueprint(&self, name: &str) -> Result<(Blueprint, Source)> {
        if let Some(b) = self.catalog.get::<Blueprint>(Kind::Blueprint, name)? {
            return Ok((b, Source::Catalog));
        }
        let builtins = self.builtin_blueprints()?;
        let names: Vec<String> = builtins.iter().map(|b| b.name().to_string()).collect();
        builtins
            .into_iter()
            .find(|b| b.name() == name)
            .map(|b| (b, Source::Builtin))
            .ok_or_else(|| {
                anyhow!(
                    "Blueprint {name} not found (built in: {}; apply one with `coffer apply -f`)",
                    names.join(", ")
                )
            })
    }

    pub fn blueprints(&self) -> Result<Vec<(Blueprint, Source)>> {
        let mut out: Vec<(Blueprint, Source)> = self
            .catalog
            .list::<Blueprint>(Kind::Blueprint)?
            .into_iter()
            .map(|b| (b, Source::Catalog))
            .collect();
        for b in self.builtin_blueprints()? {
            if !out.iter().any(|(o, _)| o.name() == b.name()) {
                out.push((b, Source::Builtin));
            }
        }
        Ok(out)
    }

    /// The built-in `default` Profile: a file location in the state dir.
    fn default_profile(&self) -> Profile {
        Profile::new(
            Kind::Profile,
            DEFAULT_PROFILE,
            ProfileSpec::file(self.home.default_location()),
        )
    }

    pub fn profile(&self, name: &str) -> Result<(Profile, Source)> {
        if let Some(p) = self.catalog.get::<Profile>(Kind::Profile, name)? {
            return Ok((p, Source::Catalog));
        }
        if name == DEFAULT_PROFILE {
            return Ok((self.default_profile(), Source::Builtin));
        }
        bail!(
            "Profile {name} not found; apply one with `coffer apply -f`, or leave it out to use the default (a directory in the state dir)"
        )
    }

    pub fn profiles(&self) -> Result<Vec<(Profile, Source)>> {
        let mut out: Vec<(Profile, Source)> = self
            .catalog
            .list::<Profile>(Kind::Profile)?
            .into_iter()
            .map(|p| (p, Source::Catalog))
            .collect();
        if !out.iter().any(|(p, _)| p.name() == DEFAULT_PROFILE) {
            out.push((self.default_profile(), Source::Builtin));
        }
        Ok(out)
    }

    pub fn workload(&self, name: &str) -> Result<Workload> {
        self.catalog.get(Kind::Workload, name)?.ok_or_else(|| {
            anyhow!("Workload {name} not found; apply one with `coffer apply -f workload.yaml`")
        })
    }

    pub fn restore_point(&self, name: &str) -> Result<RestorePoint> {
        self.catalog.get(Kind::RestorePoint, name)?.ok_or_else(|| {
            anyhow!("RestorePoint {name} not found; `coffer get restorepoints` lists them")
        })
    }

    /// Check and store documents. Returns (kind, name, "created" | "configured" | "unchanged").
    pub fn apply(&self, source: &str, text: &str) -> Result<Vec<(Kind, String, &'static str)>> {
        let planned = self.plan_apply(source, text)?;
        let mut out = Vec::new();
        for (kind, name, verdict, value) in planned {
            self.catalog.put(kind, &name, &value)?;
            out.push((kind, name, verdict));
        }
        Ok(out)
    }

    /// What [`Coffer::apply`] would store, changing nothing (`coffer apply --dry-run`):
    /// each document checked, with its verdict and the object as it would be stored.
    pub fn plan_apply(
        &self,
        source: &str,
        text: &str,
    ) -> Result<Vec<(Kind, String, &'static str, serde_json::Value)>> {
        let docs = parse_documents(source, text)?;
        if docs.is_empty() {
            bail!("{source}: no documents");
        }
        // Check everything before storing anything, so a bad file changes nothing.
        for d in &docs {
            self.check_document(d)
                .with_context(|| format!("{source}: {} {}", d.kind(), d.name()))?;
        }
        let mut out = Vec::new();
        for d in docs {
            let (kind, name) = (d.kind(), d.name().to_string());
            let existing: Option<serde_json::Value> = self.catalog.get(kind, &name)?;
            let mut value = match &d {
                Document::Blueprint(o) => serde_json::to_value(o)?,
                Document::Profile(o) => serde_json::to_value(o)?,
                Document::Workload(o) => serde_json::to_value(o)?,
                Document::BlueprintBinding(o) => serde_json::to_value(o)?,
                Document::Policy(o) => serde_json::to_value(o)?,
                Document::Signer(o) => serde_json::to_value(o)?,
            };
            // As an API server does: the creation time is the store's, set once and kept
            // across updates (bindings are ordered by it).
            let created = existing
                .as_ref()
                .and_then(|e| e.pointer("/metadata/creationTimestamp").cloned())
                .unwrap_or_else(|| serde_json::Value::String(crate::model::now_rfc3339()));
            if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.insert("creationTimestamp".into(), created);
            }
            // What the scheduler recorded stays across updates of the spec.
            if let Some(status) = existing.as_ref().and_then(|e| e.get("status"))
                && let Some(obj) = value.as_object_mut()
            {
                obj.insert("status".into(), status.clone());
            }
            let verdict = match existing {
                None => "created",
                Some(v) if v == value => "unchanged",
                Some(_) => "configured",
            };
            out.push((kind, name, verdict, value));
        }
        Ok(out)
    }

    fn check_document(&self, d: &Document) -> Result<()> {
        match d {
            Document::Blueprint(b) => {
                let plugin = crate::plugin::PluginBytes::resolve(&b.spec.plugin, b.name())?;
                let inspection = crate::plugin::inspect(&plugin)?;
                for action in b
                    .spec
                    .actions
                    .iter()
                    .flatten()
                    .chain(b.spec.params.keys())
                    .chain(b.spec.limits.timeouts.keys())
                {
                    if inspection.manifest.action(action).is_none() {
                        bail!(
                            "action {action:?} is not one of plugin {}'s actions ({})",
                            inspection.manifest.name,
                            inspection
                                .manifest
                                .actions
                                .iter()
                                .map(|a| a.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
                for a in &inspection.manifest.actions {
                    EffectiveLimits::resolve(&b.spec.limits, &a.name).map_err(|e| anyhow!(e))?;
                }
                for w in crate::cap::exec::policy::check_grants(&b.spec.grants)
                    .map_err(|e| anyhow!("spec.grants.{e}"))?
                {
                    tracing::warn!(blueprint = %b.name(), "{w}");
                }
                crate::cap::signed_http::check_grants(&b.spec.grants)
                    .map_err(|e| anyhow!("spec.grants.{e}"))?;
                crate::cap::net::check_grants(&b.spec.grants)
                    .map_err(|e| anyhow!("spec.grants.{e}"))?;
                Ok(())
            }
            Document::Profile(p) => {
                crate::storage::Location::from_profile(p, &self.credentials).map(|_| ())
            }
            Document::Signer(s) => {
                match crate::cap::signed_http::signer::check(s, &self.credentials) {
                    Ok(_) => Ok(()),
                    // The AWS chain is the environment of the process that runs the actions
                    // (a service's, a cron job's): not necessarily this one's.
                    Err(e) if s.spec.credentials.is_none() => {
                        tracing::warn!(signer = %s.name(), "{e}; the coffer that runs actions needs those keys");
                        Ok(())
                    }
                    Err(e) => {
                        let prefix = format!("Signer {}: ", s.name());
                        Err(anyhow!(e.strip_prefix(&prefix).unwrap_or(&e).to_string()))
                    }
                }
            }
            Document::Policy(p) => crate::policy::rules(&p.spec)
                .map(|_| ())
                .map_err(|e| anyhow!(e)),
            Document::BlueprintBinding(b) => {
                if b.spec.blueprint.is_empty() {
                    bail!("spec.blueprint is empty");
                }
                let s = &b.spec.selector;
                if s.kinds.is_empty()
                    && s.namespaces.is_empty()
                    && s.labels.is_empty()
                    && s.annotations.is_empty()
                {
                    bail!(
                        "spec.match is empty, so the binding would match nothing; give kinds, namespaces, labels or annotations"
                    );
                }
                Ok(())
            }
            Document::Workload(w) => {
                if let Some(user) = &w.spec.run_as {
                    crate::cap::exec::run_as::RunAs::for_workload(user).map_err(|e| anyhow!(e))?;
                }
                for (name, r) in &w.spec.secrets {
                    if r.file.is_some() == r.env.is_some() || r.secret.is_some() {
                        bail!("spec.secrets.{name}: give exactly one of `file` or `env`");
                    }
                }
                for (name, path) in &w.spec.volumes {
                    if !coffer_manifest::is_dns_label(name) {
                        bail!(
                            "spec.volumes.{name}: a volume name is lowercase letters, digits and '-'"
                        );
                    }
                    if !path.is_absolute() {
                        bail!(
                            "spec.volumes.{name}: {} must be an absolute path",
                            path.display()
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

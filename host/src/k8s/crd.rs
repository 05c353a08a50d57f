//! The CustomResourceDefinitions, generated from the same Rust types the catalog uses, so
//! the cluster and local mode accept the same YAML. `coffer crds` prints them;
//! deploy/crds.yaml is that output (a test keeps it current).

use super::{GROUP, VERSION};
use crate::model::{
    ActionSetSpec, ActionSetStatus, BlueprintBindingSpec, BlueprintSpec, PolicySpec, PolicyStatus,
    ProfileSpec, RestorePointSpec,
};
use schemars::JsonSchema;
use serde_json::{Value, json};

/// The OpenAPI v3 schema of a type, made structural as Kubernetes requires.
fn schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube_core::schema::StructuralSchemaRewriter)
        .with_transform(kube_core::schema::OptionalEnum)
        .into_generator();
    let mut v = generator.into_root_schema_for::<T>().to_value();
    if let Some(m) = v.as_object_mut() {
        for k in ["$schema", "title", "definitions", "$defs"] {
            m.remove(k);
        }
    }
    make_structural(&mut v);
    v
}

/// Free-form values (params, metadata maps of JSON) keep their content; a schema with no
/// type is not allowed in a structural schema.
fn make_structural(v: &mut Value) {
    match v {
        Value::Bool(true) => *v = json!({"x-kubernetes-preserve-unknown-fields": true}),
        Value::Object(m) => {
            if let Some(f) = m.get("format").and_then(Value::as_str) {
                match kubernetes_format(f) {
                    Some(known) => m.insert("format".into(), json!(known)),
                    None => m.remove("format"),
                };
            }
            if let Some(Value::Bool(true)) = m.get("additionalProperties") {
                m.remove("additionalProperties");
                m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
            if let Some(Value::Bool(false)) = m.get("additionalProperties") {
                m.remove("additionalProperties");
            }
            let untyped = !m.contains_key("type")
                && !m.contains_key("anyOf")
                && !m.contains_key("oneOf")
                && !m.contains_key("allOf")
                && !m.contains_key("x-kubernetes-preserve-unknown-fields")
                && !m.contains_key("x-kubernetes-int-or-string");
            if untyped {
                m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for p in props.values_mut() {
                    make_structural(p);
                }
            }
            for k in ["items", "additionalProperties"] {
                if let Some(p) = m.get_mut(k) {
                    make_structural(p);
                }
            }
            for k in ["anyOf", "oneOf", "allOf"] {
                if let Some(Value::Array(a)) = m.get_mut(k) {
                    for p in a {
                        make_structural(p);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The formats the API server knows (k8s.io/apiextensions-apiserver's supported list):
/// schemars' Rust integer formats (`uint32`, `uint64`, `uint`, ...) draw a warning at
/// apply and are not checked, so unsigned integers become `int64` (their `minimum: 0`
/// stays) and anything unknown is dropped.
fn kubernetes_format(format: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "date-time",
        "int32",
        "int64",
        "float",
        "double",
    ];
    match format {
        "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
        "uint32" | "uint64" | "uint" | "int" => Some("int64"),
        f => KNOWN.iter().find(|k| **k == f).copied(),
    }
}

struct Def {
    kind: &'static str,
    short: &'static [&'static str],
    spec: Value,
    status: Option<Value>,
    columns: Value,
}

fn crd(d: Def) -> Value {
    let plural = super::resource(d.kind).plural;
    let mut properties = json!({"spec": d.spec});
    let mut subresources = json!({});
    if let Some(s) = d.status {
        properties["status"] = s;
        subresources = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": d.kind,
                "listKind": format!("{}List", d.kind),
                "plural": plural,
                "singular": d.kind.to_ascii_lowercase(),
                "shortNames": d.short,
                "categories": ["coffer"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": properties,
                }},
                "subresources": subresources,
                "additionalPrinterColumns": d.columns,
            }],
        },
    })
}

fn col(name: &str, path: &str) -> Value {
    json!({"name": name, "type": "string", "jsonPath": path})
}

fn age() -> Value {
    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
}

/// Every CRD, in the order `kubectl apply` should see them.
pub fn all() -> Vec<Value> {
    vec![
        crd(Def {
            kind: "Blueprint",
            short: &["bp"],
            spec: schema::<BlueprintSpec>(),
            status: None,
            columns: json!([col("Plugin", ".spec.plugin.builtin"), age()]),
        }),
        crd(Def {
            kind: "Profile",
            short: &["prof"],
            spec: schema::<ProfileSpec>(),
            status: Some(schema::<crate::model::ProfileStatus>()),
            columns: json!([
                col("Type", ".spec.type"),
                col("Validation", ".status.validation.phase"),
                age()
            ]),
        }),
        crd(Def {
            kind: "Signer",
            short: &[],
            spec: schema::<crate::model::SignerSpec>(),
            status: None,
            columns: json!([
                col("Type", ".spec.type"),
                col("Region", ".spec.region"),
                col("Endpoint", ".spec.endpoint"),
                age()
            ]),
        }),
        crd(Def {
            kind: "BlueprintBinding",
            short: &["bb"],
            spec: schema::<BlueprintBindingSpec>(),
            status: None,
            columns: json!([col("Blueprint", ".spec.blueprint"), age()]),
        }),
        crd(Def {
            kind: "ActionSet",
            short: &["as"],
            spec: schema::<ActionSetSpec>(),
            status: Some(schema::<ActionSetStatus>()),
            columns: json!([
                col("Action", ".spec.action"),
                col("Workload", ".spec.workload"),
                col("Phase", ".status.phase"),
                col("RestorePoint", ".status.restorePoint"),
                age()
            ]),
        }),
        crd(Def {
            kind: "RestorePoint",
            short: &["rp"],
            spec: schema::<RestorePointSpec>(),
            status: None,
            columns: json!([
                col("Workload", ".spec.workload"),
                col("Profile", ".spec.profile"),
                json!({"name": "Size", "type": "integer", "jsonPath": ".spec.size"}),
                age()
            ]),
        }),
        crd(Def {
            kind: "Policy",
            short: &["pol"],
            spec: schema::<PolicySpec>(),
            status: Some(schema::<PolicyStatus>()),
            columns: json!([
                col("Frequency", ".spec.frequency"),
                col("Last tick", ".status.lastTick"),
                col("Next tick", ".status.nextTick"),
                age()
            ]),
        }),
    ]
}

/// The CRDs as one multi-document YAML stream.
pub fn yaml() -> String {
    let mut out =
        String::from("# Generated by `coffer crds` from coffer's Rust types; do not edit.\n");
    for c in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&c).expect("a CRD serializes"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Structural: every property schema has a type (or keeps unknown fields), and no
    /// `additionalProperties` sits beside `properties`.
    fn check(v: &Value, path: &str) {
        let Some(m) = v.as_object() else {
            panic!("{path}: schema is not an object: {v}");
        };
        assert!(
            m.contains_key("type")
                || m.contains_key("x-kubernetes-preserve-unknown-fields")
                || m.contains_key("x-kubernetes-int-or-string"),
            "{path} has no type: {v}"
        );
        assert!(
            !(m.contains_key("properties") && m.contains_key("additionalProperties")),
            "{path}: properties and additionalProperties together"
        );
        assert!(!m.contains_key("$ref"), "{path}: $ref left in");
        if let Some(Value::Object(p)) = m.get("properties") {
            for (k, s) in p {
                check(s, &format!("{path}.{k}"));
            }
        }
        if let Some(i) = m.get("items") {
            check(i, &format!("{path}[]"));
        }
        if let Some(f) = m.get("format") {
            let f = f.as_str().unwrap();
            assert_eq!(
                kubernetes_format(f),
                Some(f),
                "{path}: format {f} is unknown to the API server"
            );
        }
    }

    #[test]
    fn crds_are_structural() {
        for c in all() {
            let name = c["metadata"]["name"].as_str().unwrap().to_string();
            check(
                &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
                &name,
            );
        }
        let all = all();
        let a = all
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == "ActionSet")
            .unwrap();
        let spec = &a["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["cancel"]["type"], "boolean");
        assert!(
            spec["required"]
                .as_array()
                .unwrap()
                .contains(&json!("workload"))
        );
    }
}

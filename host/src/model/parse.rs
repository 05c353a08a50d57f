//! Parsing YAML documents of the user-facing kinds, with errors that name the field.

use super::{Document, Kind, Object};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {index}{what}: {message}")]
pub struct ParseError {
    pub source_name: String,
    /// 1-based index of the document in the stream.
    pub index: usize,
    /// ` (Kind name)` when known.
    pub what: String,
    pub message: String,
}

/// Parse a stream of YAML documents (`---` separated).
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Document>, ParseError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let err = |what: String, message: String| ParseError {
            source_name: source_name.to_string(),
            index: i + 1,
            what,
            message,
        };
        let value: serde_yaml_ng::Value =
            serde::Deserialize::deserialize(de).map_err(|e| err(String::new(), e.to_string()))?;
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let kind_str = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let what = if kind_str.is_empty() {
            String::new()
        } else {
            format!(" ({kind_str} {name})")
        };
        let api = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        if api != super::API_VERSION {
            return Err(err(
                what,
                format!("apiVersion must be {:?}, found {api:?}", super::API_VERSION),
            ));
        }
        let kind = Kind::parse(kind_str)
            .filter(|k| k.as_str() == kind_str)
            .ok_or_else(|| {
                err(
                    what.clone(),
                    format!(
                        "kind {kind_str:?} is not one of Blueprint, Profile, Workload, BlueprintBinding, Policy"
                    ),
                )
            })?;
        if !coffer_manifest::is_dns_label(name) {
            return Err(err(
                what,
                format!(
                    "metadata.name {name:?} must be lowercase letters, digits and '-' (at most 63)"
                ),
            ));
        }
        let doc = match kind {
            Kind::Blueprint => {
                Document::Blueprint(Box::new(typed(value).map_err(|m| err(what.clone(), m))?))
            }
            Kind::Profile => {
                Document::Profile(Box::new(typed(value).map_err(|m| err(what.clone(), m))?))
            }
            Kind::Workload => {
                Document::Workload(Box::new(typed(value).map_err(|m| err(what.clone(), m))?))
            }
            Kind::BlueprintBinding => Document::BlueprintBinding(Box::new(
                typed(value).map_err(|m| err(what.clone(), m))?,
            )),
            Kind::Policy => {
                Document::Policy(Box::new(typed(value).map_err(|m| err(what.clone(), m))?))
            }
            Kind::Signer => {
                Document::Signer(Box::new(typed(value).map_err(|m| err(what.clone(), m))?))
            }
            Kind::ActionSet | Kind::RestorePoint => {
                return Err(err(
                    what,
                    format!(
                        "{kind} is recorded by coffer, not applied: use `coffer backup`, `restore` or `delete`"
                    ),
                ));
            }
        };
        docs.push(doc);
    }
    Ok(docs)
}

fn typed<S: DeserializeOwned, T: DeserializeOwned + Default>(
    value: serde_yaml_ng::Value,
) -> Result<Object<S, T>, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let y = "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: db}\nspec:\n  blueprint: x\n  env: {PGPORT: [1]}\n";
        let e = parse_documents("w.yaml", y).unwrap_err().to_string();
        assert!(e.contains("spec.env.PGPORT"), "{e}");
        assert!(e.contains("document 1 (Workload db)"), "{e}");
        let y = "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: db}\nspec:\n  blueprnt: x\n";
        let e = parse_documents("w.yaml", y).unwrap_err().to_string();
        assert!(e.contains("blueprnt"), "{e}");
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n";
        assert!(
            parse_documents("p", y)
                .unwrap_err()
                .to_string()
                .contains("apiVersion")
        );
        let y = "a: [";
        assert!(parse_documents("p", y).is_err());
    }

    #[test]
    fn several_documents() {
        let y = "---\napiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {name: local}\nspec: {type: file, path: /tmp/x}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: db}\nspec: {blueprint: postgres-logical}\n---\n";
        let docs = parse_documents("x", y).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name(), "db");
    }
}

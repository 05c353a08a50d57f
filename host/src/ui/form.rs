//! A form generated from a plugin action's params schema, and its answers back into params:
//! only what the schema allows, each value typed as the schema says.

use crate::ui::pages::esc;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The kinds of field a schema property becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Bool,
    Integer,
    Number,
    Text,
    List,
    Json,
}

fn field(prop: &Value) -> Field {
    let types: Vec<&str> = match &prop["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let has = |t: &str| types.contains(&t);
    if has("boolean") {
        Field::Bool
    } else if has("integer") {
        Field::Integer
    } else if has("number") {
        Field::Number
    } else if has("array") && prop["items"]["type"] == "string" {
        Field::List
    } else if has("string") || prop.get("enum").is_some() {
        Field::Text
    } else {
        Field::Json
    }
}

fn properties(schema: &Value) -> Vec<(String, Value)> {
    schema["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The form's fields (inside a `<fieldset>`), names prefixed `p.`.
pub fn fields(schema: &Value) -> String {
    let mut out = String::new();
    for (name, prop) in properties(schema) {
        let id = format!("p-{}", esc(&name));
        let desc = prop["description"]
            .as_str()
            .map(|d| format!("<small id=\"{id}-d\">{}</small>", esc(d)))
            .unwrap_or_default();
        let described = if desc.is_empty() {
            String::new()
        } else {
            format!(" aria-describedby=\"{id}-d\"")
        };
        let default = &prop["default"];
        let input = match field(&prop) {
            Field::Bool => {
                // A select, not a checkbox: "not given" (the plugin's default) is a choice too.
                let d = match default.as_bool() {
                    Some(true) => "default (yes)",
                    Some(false) => "default (no)",
                    None => "default",
                };
                format!(
                    "<select id=\"{id}\" name=\"p.{n}\"{described}><option value=\"\">{d}</option><option value=\"true\">yes</option><option value=\"false\">no</option></select>",
                    n = esc(&name)
                )
            }
            Field::Text if prop.get("enum").is_some() => {
                let opts: String = prop["enum"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|o| format!("<option>{}</option>", esc(o)))
                    .collect();
                format!(
                    "<select id=\"{id}\" name=\"p.{n}\"{described}><option value=\"\">default</option>{opts}</select>",
                    n = esc(&name)
                )
            }
            f => {
                let (kind, hint) = match f {
                    Field::Integer => ("number", String::new()),
                    Field::Number => ("text", " inputmode=\"decimal\"".to_string()),
                    Field::List => ("text", " placeholder=\"comma-separated\"".to_string()),
                    Field::Json => ("text", " placeholder=\"JSON\"".to_string()),
                    _ => ("text", String::new()),
                };
                let placeholder = if default.is_null() || hint.contains("placeholder") {
                    String::new()
                } else {
                    format!(" placeholder=\"default: {}\"", esc(&default.to_string()))
                };
                format!(
                    "<input id=\"{id}\" name=\"p.{n}\" type=\"{kind}\"{hint}{placeholder}{described}>",
                    n = esc(&name)
                )
            }
        };
        out.push_str(&format!(
            "<div class=\"field\"><label for=\"{id}\">{}</label><br>{input}{desc}</div>",
            esc(&name)
        ));
    }
    out
}

/// The params a submitted form gives: empty fields are left to the plugin's defaults;
/// fields the schema does not have are refused.
pub fn params(
    schema: &Value,
    form: &HashMap<String, String>,
) -> Result<Map<String, Value>, String> {
    let props: HashMap<String, Value> = properties(schema).into_iter().collect();
    let mut out = Map::new();
    for (key, raw) in form {
        let Some(name) = key.strip_prefix("p.") else {
            continue;
        };
        let Some(prop) = props.get(name) else {
            return Err(format!("{name}: the plugin takes no such param"));
        };
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("{name}: {raw:?} is not {what}");
        let v = match field(prop) {
            Field::Bool => Value::Bool(raw.parse().map_err(|_| bad("yes or no"))?),
            Field::Integer => Value::from(raw.parse::<i64>().map_err(|_| bad("a whole number"))?),
            Field::Number => Value::from(raw.parse::<f64>().map_err(|_| bad("a number"))?),
            Field::Text => Value::String(raw.to_string()),
            Field::List => Value::Array(
                raw.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .filter(|v| v.as_str() != Some(""))
                    .collect(),
            ),
            Field::Json => {
                serde_json::from_str(raw).map_err(|e| format!("{name}: not JSON: {e}"))?
            }
        };
        out.insert(name.to_string(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::json!({"type": "object", "properties": {
            "replace": {"type": "boolean", "default": false, "description": "Drop <first>"},
            "databases": {"type": ["array", "null"], "items": {"type": "string"}},
            "targetDatabase": {"type": ["string", "null"]},
            "jobs": {"type": "integer"},
            "target": {"type": ["object", "null"]}
        }})
    }

    #[test]
    fn every_property_is_a_labelled_field_and_comes_back_typed() {
        let html = fields(&schema());
        for n in ["replace", "databases", "targetDatabase", "jobs", "target"] {
            assert!(
                html.contains(&format!("<label for=\"p-{n}\">")),
                "{n}: {html}"
            );
            assert!(html.contains(&format!("id=\"p-{n}\"")), "{n}");
        }
        assert!(
            html.contains("Drop &lt;first&gt;"),
            "descriptions are escaped"
        );
        let form: HashMap<String, String> = [
            ("p.replace", "true"),
            ("p.databases", "a, b"),
            ("p.targetDatabase", ""),
            ("p.jobs", "4"),
            ("p.target", "{\"time\": \"2026-01-01T00:00:00Z\"}"),
            ("csrf", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = params(&schema(), &form).unwrap();
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"replace": true, "databases": ["a", "b"], "jobs": 4, "target": {"time": "2026-01-01T00:00:00Z"}})
        );
        let mut bad = form.clone();
        bad.insert("p.evil".into(), "1".into());
        assert!(
            params(&schema(), &bad)
                .unwrap_err()
                .contains("no such param")
        );
        bad.remove("p.evil");
        bad.insert("p.jobs".into(), "many".into());
        assert!(
            params(&schema(), &bad)
                .unwrap_err()
                .contains("not a whole number")
        );
    }
}

//! The plugin manifest (what a plugin is and what it needs) and the capability model.
//!
//! One JSON document is the source of truth: a plugin embeds it in the `coffer:manifest`
//! custom section (so the host reads it without running code) and returns the same document
//! from `describe()`. A Blueprint grants a [`Capabilities`] of the same shape; the host allows
//! a call only when the manifest declares it AND the Blueprint grants it.

pub mod net;

use serde::{Deserialize, Serialize};

/// The custom section a plugin's manifest lives in.
pub const MANIFEST_SECTION: &str = "coffer:manifest";
/// The plugin ABI version (the WIT package version) this crate describes.
pub const API_VERSION: &str = "0.2.0";
/// The ABI versions (major.minor) the host runs: a plugin built for 0.1 imports the 0.1.0
/// interfaces, which the host still links beside 0.2.0's.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1", "0.2"];
/// Largest manifest the host accepts, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// Action names with a meaning to the host (as in K10).
pub const RESERVED_ACTIONS: &[&str] = &[
    "backupPrehook",
    "backup",
    "backupPosthook",
    "restore",
    "restorePosthook",
    "delete",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub api_version: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub actions: Vec<ActionSpec>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON schema for the action's params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_schema: Option<serde_json::Value>,
    /// The backup action can build on the previous restore point (`coffer backup
    /// --incremental`): the host binds that restore point and its own bases, read-only, as
    /// locations `base-1`, `base-2`, … and passes the base's artifacts (location `base-1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incremental: bool,
}

/// Location access levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LocationAccess {
    Read,
    Write,
    Delete,
}

impl LocationAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationAccess::Read => "read",
            LocationAccess::Write => "write",
            LocationAccess::Delete => "delete",
        }
    }
}

/// A signer named by a manifest, or granted with an allow-list by a Blueprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignerUse {
    Name(String),
    Allow(SignerAllow),
}

/// Schemas describe Blueprints (CRDs, `coffer apply`), which grant only the allow-list
/// form; a string-or-object union would not be a structural Kubernetes schema.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for SignerUse {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SignerUse".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        SignerAllow::json_schema(generator)
    }
}

impl SignerUse {
    pub fn signer(&self) -> &str {
        match self {
            SignerUse::Name(n) => n,
            SignerUse::Allow(a) => &a.signer,
        }
    }
}

impl From<&str> for SignerUse {
    fn from(name: &str) -> SignerUse {
        SignerUse::Name(name.to_string())
    }
}

/// The requests a Blueprint lets a plugin have signed with one Signer, for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignerAllow {
    /// The Signer's name.
    pub signer: String,
    /// The service the requests are signed for (SigV4's service name: `rds`, `s3`, `sts`).
    pub service: String,
    /// Hosts the requests may go to; `*` matches any run of characters. Default: the
    /// Signer's `endpoint` host if it has one, else `SERVICE.REGION.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// HTTP methods allowed (`GET`, `POST`, …). Default: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// Kubernetes API access: a kind and the verbs allowed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KindGrant {
    #[serde(default)]
    pub api_group: String,
    pub kind: String,
    pub verbs: Vec<String>,
    /// Namespaces besides the subject's own (`*` globs, e.g. `team-*`); empty: the subject's
    /// namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// A set of capabilities: declared by a plugin manifest, or granted by a Blueprint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// argv patterns, optionally led by the environment variables the process may be given
    /// (`PGPASSWORD=* pg_dump --format=custom **`); see [`ExecPattern`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// A Blueprint's statement that it means to grant programs that run code or touch files
    /// (shells, interpreters, `cat`, `dd`, …) with wildcard arguments. Not for manifests.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unsafe_args: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub location: Vec<LocationAccess>,
    /// Secret names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshot: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kube: Vec<KindGrant>,
    /// Signers for `signed-http`: a manifest declares their names (`aws`); a Blueprint
    /// grants each with the requests it may sign (`{signer: aws, service: rds, …}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_http: Vec<SignerUse>,
    /// Container images a task pod may run (`exec.task-pod`); `*` matches any run of
    /// characters, e.g. `docker.io/library/postgres:*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// TCP peers, `host:port` ([`net::NetTarget`]): reached through wasi:sockets, names
    /// looked up through the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<String>,
}

/// `*` matches any run of characters; everything else literally. Linear in the text: each
/// piece between stars is found leftmost, which is enough when `*` is the only wildcard
/// (patterns come from plugin manifests, so no pattern may cost exponential time).
pub fn glob_matches(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == s;
    };
    if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Capabilities {
    /// The first exec pattern that matches `argv` and allows every variable in `env` (name,
    /// and the value unless it is a secret's: `None`).
    pub fn exec_pattern_for(&self, argv: &[String], env: &[(&str, Option<&str>)]) -> Option<&str> {
        self.exec
            .iter()
            .find(|p| ExecPattern::parse(p).is_some_and(|p| p.matches(argv, env)))
            .map(String::as_str)
    }
    pub fn allows_location(&self, access: LocationAccess) -> bool {
        self.location.contains(&access)
    }
    pub fn allows_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s == name)
    }
}

impl Manifest {
    /// Parse and check a manifest document. Errors name the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
                bytes.len()
            ));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest: {e}"))?;
        m.check()?;
        Ok(m)
    }

    /// Structural checks that serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        if !is_dns_label(&self.name) {
            return Err(format!(
                "manifest name {:?} must be lowercase letters, digits and '-' (at most 63)",
                self.name
            ));
        }
        let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        if !SUPPORTED_API_VERSIONS.contains(&major_minor(&self.api_version).as_str()) {
            return Err(format!(
                "plugin {} was built for plugin ABI {}, this host runs {}; rebuild it against coffer-plugin-sdk {}",
                self.name,
                self.api_version,
                SUPPORTED_API_VERSIONS.join(" and "),
                major_minor(API_VERSION)
            ));
        }
        if self.actions.is_empty() {
            return Err(format!("plugin {} declares no actions", self.name));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.actions {
            if a.name.is_empty() || !seen.insert(a.name.as_str()) {
                return Err(format!(
                    "plugin {} declares action {:?} twice or with an empty name",
                    self.name, a.name
                ));
            }
        }
        for p in &self.capabilities.exec {
            if ExecPattern::parse(p).is_none() {
                return Err(format!(
                    "plugin {} declares exec pattern {p:?}, which names no program",
                    self.name
                ));
            }
        }
        for t in &self.capabilities.net {
            net::NetTarget::parse(t).map_err(|e| format!("plugin {}: {e}", self.name))?;
        }
        if self.capabilities.unsafe_args {
            return Err(format!(
                "plugin {}: unsafeArgs is the operator's to grant in a Blueprint, not a plugin's to declare",
                self.name
            ));
        }
        Ok(())
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// True for a DNS-1123 label: what names of kinds and plugins must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An exec pattern: whitespace-separated tokens, first the environment variables the process
/// may be given (`NAME=VALUE`, VALUE a glob; a secret's value is not matched, only its name),
/// then the program and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecPattern<'a> {
    env: Vec<(&'a str, &'a str)>,
    argv: Vec<&'a str>,
}

/// A name an environment variable may have.
pub fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl<'a> ExecPattern<'a> {
    /// `None` when it names no program.
    pub fn parse(pattern: &'a str) -> Option<ExecPattern<'a>> {
        let mut env = Vec::new();
        let mut tokens = pattern.split_whitespace().peekable();
        while let Some(t) = tokens.peek() {
            match t.split_once('=') {
                Some((name, value)) if is_env_name(name) => {
                    env.push((name, value));
                    tokens.next();
                }
                _ => break,
            }
        }
        let argv: Vec<&str> = tokens.collect();
        (!argv.is_empty() && argv[0] != "**").then_some(ExecPattern { env, argv })
    }

    pub fn program(&self) -> &'a str {
        self.argv[0]
    }

    pub fn args(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.argv[1..].iter().copied()
    }

    pub fn env_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.env.iter().map(|(n, _)| *n)
    }

    pub fn matches(&self, argv: &[String], env: &[(&str, Option<&str>)]) -> bool {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        match_tokens(&self.argv, &args)
            && env.iter().all(|(name, value)| {
                self.env.iter().any(|(n, pat)| {
                    n == name && value.is_none_or(|v| wildcard(pat.as_bytes(), v.as_bytes()))
                })
            })
    }
}

/// Whether `argv` matches an exec pattern (ignoring its environment entries).
///
/// A pattern is argv tokens split on whitespace. In a token, `*` matches any run of
/// characters and `?` one character; a token that is exactly `**` matches any number of
/// arguments (including none). There is no shell, so a matching argv can only run the named
/// program with arguments the pattern allows.
pub fn argv_matches(pattern: &str, argv: &[String]) -> bool {
    ExecPattern::parse(pattern).is_some_and(|p| p.matches(argv, &[]))
}

/// Dynamic programming over (token, argument) positions: linear in their product, so a
/// pattern full of `**` cannot make matching explode.
fn match_tokens(tokens: &[&str], args: &[&str]) -> bool {
    // ok[j] = tokens[i..] matches args[j..], computed for i from the end.
    let mut ok = vec![false; args.len() + 1];
    ok[args.len()] = true;
    for tok in tokens.iter().rev() {
        let mut next = vec![false; args.len() + 1];
        for j in (0..=args.len()).rev() {
            next[j] = if *tok == "**" {
                ok[j] || (j < args.len() && next[j + 1])
            } else {
                j < args.len() && ok[j + 1] && wildcard(tok.as_bytes(), args[j].as_bytes())
            };
        }
        ok = next;
    }
    ok[0]
}

fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    // Iterative glob with backtracking to the last '*': linear in practice, no recursion.
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_stars_only_and_in_linear_time() {
        for (p, t, want) in [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "a", true),
            ("a*c", "abbc", true),
            ("a*c", "ac", true),
            ("a*a", "a", false),
            ("ab*ba", "aba", false),
            ("*b*d*", "abcde", true),
            ("*b*d*", "adcbe", false),
            ("team-*", "team-a", true),
            ("team-*", "tea", false),
            ("*é*", "café", true),
        ] {
            assert_eq!(glob_matches(p, t), want, "{p} ~ {t}");
        }
        // A pattern a hostile manifest could send: answers at once, not after 2^40 steps.
        let text = "a".repeat(100_000);
        assert!(!glob_matches(&format!("{}b", "*a".repeat(40)), &text));
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn exec_patterns() {
        assert!(argv_matches("pg_dump **", &argv("pg_dump")));
        assert!(argv_matches("pg_dump **", &argv("pg_dump -Fc -d shop")));
        assert!(!argv_matches("pg_dump **", &argv("pg_dumpall")));
        assert!(!argv_matches("pg_dump **", &argv("sh -c pg_dump")));
        assert!(argv_matches(
            "pg_dumpall --globals-only **",
            &argv("pg_dumpall --globals-only -w")
        ));
        assert!(!argv_matches(
            "pg_dumpall --globals-only **",
            &argv("pg_dumpall -w")
        ));
        assert!(argv_matches(
            "psql -d * -c *",
            &argv("psql -d shop -c select")
        ));
        assert!(!argv_matches(
            "psql -d * -c *",
            &argv("psql -d shop -c select extra")
        ));
        assert!(argv_matches("pg_* **", &argv("pg_restore -l")));
        assert!(!argv_matches("pg_* **", &argv("rm -rf /")));
        assert!(!argv_matches("", &argv("x")));
        assert!(argv_matches("a ** b", &argv("a x y b")));
        assert!(!argv_matches("a ** b", &argv("a x y")));
        // A pattern names its program: one that starts with `**` matches nothing.
        assert!(!argv_matches("** a **", &argv("x a y")));
        assert!(argv_matches("x ** a **", &argv("x a y")));
        // The environment a pattern allows: names, value globs; secrets by name only.
        let p = ExecPattern::parse("PGPASSWORD=* TZ=UTC pg_dump **").unwrap();
        assert_eq!(p.program(), "pg_dump");
        assert!(p.matches(&argv("pg_dump -Fc"), &[("PGPASSWORD", None)]));
        assert!(p.matches(&argv("pg_dump"), &[("TZ", Some("UTC"))]));
        assert!(!p.matches(&argv("pg_dump"), &[("TZ", Some("CET"))]));
        assert!(!p.matches(&argv("pg_dump"), &[("PGHOST", Some("evil"))]));
        assert!(!argv_matches("pg_dump **", &argv("PGHOST=x pg_dump")));
        assert!(ExecPattern::parse("A=1 B=2").is_none());
        assert!(ExecPattern::parse("** x").is_none());
        // Many `**` against a long argv stays fast.
        let long: Vec<String> = (0..2000).map(|i| format!("x{i}")).collect();
        assert!(!argv_matches(&format!("{} nope", "** ".repeat(50)), &long));
    }

    #[test]
    fn manifest_errors_name_the_field() {
        let err = Manifest::from_json(
            br#"{"apiVersion":"0.1.0","name":"x","version":"1","actions":[],"bogus":1}"#,
        )
        .unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = Manifest::from_json(
            br#"{"apiVersion":"0.3.0","name":"x","version":"1","actions":[{"name":"backup"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("ABI"), "{err}");
        let err = Manifest::from_json(
            br#"{"apiVersion":"0.1.0","name":"X y","version":"1","actions":[{"name":"backup"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("lowercase"), "{err}");
    }
}

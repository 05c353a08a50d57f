//! Who may use the dashboard (local mode): whoever holds the token. Every request carries
//! it, as `Authorization: Bearer TOKEN` (API clients) or as the HttpOnly, SameSite=Strict
//! cookie the login form sets (browsers). A request authenticated by the cookie — which a
//! browser sends by itself — must also carry the CSRF token to change anything.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "coffer_ui";
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The dashboard's secret and what is derived from it.
pub struct Token {
    digest: [u8; 32],
    value: String,
    csrf: String,
}

/// How a request proved it holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Bearer,
    Cookie,
}

impl Token {
    pub fn new(value: String) -> Token {
        let csrf = hex(&Sha256::digest(
            format!("coffer-ui-csrf\0{value}").as_bytes(),
        ));
        Token {
            digest: Sha256::digest(value.as_bytes()).into(),
            value,
            csrf,
        }
    }

    /// A fresh random token (32 bytes, hex).
    pub fn random() -> Token {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the OS random source");
        Token::new(hex(&b))
    }

    /// The token of `file` (at least 16 characters), else a random one printed once.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Token> {
        use anyhow::Context;
        let Some(f) = file else {
            let t = Token::random();
            eprintln!("dashboard token (printed once): {}", t.value());
            return Ok(t);
        };
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("reading the dashboard's token file {}", f.display()))?;
        let t = t.trim().to_string();
        if t.len() < 16 {
            anyhow::bail!(
                "the dashboard's token file {}: the token must be at least 16 characters (e.g. `openssl rand -hex 32 > {}`)",
                f.display(),
                f.display()
            );
        }
        Ok(Token::new(t))
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// The CSRF token forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Compared as digests: equal-length values, so the time taken says nothing of how
    /// much of a guess was right.
    pub fn matches(&self, given: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        d.iter()
            .zip(self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    pub fn csrf_matches(&self, given: &str) -> bool {
        Token::new(self.csrf.clone()).matches(given)
    }

    /// How `headers` prove the token, if they do.
    pub fn check(&self, headers: &HeaderMap) -> Option<Proof> {
        let (given, proof) = presented(headers)?;
        self.matches(&given).then_some(proof)
    }

    /// The Set-Cookie value that logs in the browser that sent `headers`: `Secure` when it
    /// reached the dashboard over HTTPS (directly or through a proxy that says so), so the
    /// cookie never goes out over plain HTTP after that.
    pub fn cookie(&self, headers: &HeaderMap) -> String {
        let secure = if over_https(headers) { "; Secure" } else { "" };
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
            self.value
        )
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn over_https(headers: &HeaderMap) -> bool {
    header_str(headers, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || header_str(headers, header::ORIGIN.as_str()).is_some_and(|o| o.starts_with("https://"))
}

/// Whether a log-in post comes from the dashboard's own page. A browser says where a post
/// comes from (`Sec-Fetch-Site`, else `Origin`); one from another site is refused, or a page
/// there could log the user's browser in as someone else (login CSRF). A client that says
/// neither (curl, a script) is no browser and is let through.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = header_str(headers, "sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = header_str(headers, header::ORIGIN.as_str()) else {
        return true;
    };
    let host = header_str(headers, header::HOST.as_str()).unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
}

/// The token a request carries and how: `Authorization: Bearer` first, else the
/// dashboard's cookie (an empty one is none).
pub fn presented(headers: &HeaderMap) -> Option<(String, Proof)> {
    if let Some(b) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((b.trim().to_string(), Proof::Bearer));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| (v.to_string(), Proof::Cookie))
        .filter(|(v, _)| !v.is_empty())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_login_from_another_site_is_refused_and_https_cookies_are_secure() {
        let own = [("host", "127.0.0.1:8080")];
        assert!(same_origin(&headers(&own)), "no browser");
        assert!(same_origin(&headers(&[
            own[0],
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            own[0],
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[own[0], ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            own[0],
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[
            own[0],
            ("sec-fetch-site", "same-origin")
        ])));
        let t = Token::new("x".repeat(20));
        assert!(!t.cookie(&headers(&own)).contains("Secure"));
        assert!(
            t.cookie(&headers(&[("x-forwarded-proto", "https")]))
                .ends_with("; Secure")
        );
        assert!(
            t.cookie(&headers(&[("origin", "https://coffer.example")]))
                .contains("; Secure")
        );
    }

    #[test]
    fn the_token_and_its_csrf_are_checked() {
        let t = Token::new("s3cret".into());
        let mut h = HeaderMap::new();
        assert_eq!(t.check(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(t.check(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(t.check(&h), Some(Proof::Bearer));
        let mut c = HeaderMap::new();
        c.insert(header::COOKIE, "a=b; coffer_ui=s3cret".parse().unwrap());
        assert_eq!(t.check(&c), Some(Proof::Cookie));
        assert!(t.csrf_matches(t.csrf()));
        assert!(!t.csrf_matches("s3cret"));
        assert_ne!(Token::random().value(), Token::random().value());
        // An empty cookie is no token; the header wins over the cookie.
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; coffer_ui=".parse().unwrap());
        assert_eq!(presented(&h), None);
        h.insert(header::COOKIE, "a=b; coffer_ui=tok".parse().unwrap());
        assert_eq!(presented(&h), Some(("tok".into(), Proof::Cookie)));
        h.insert(header::AUTHORIZATION, "Bearer hdr".parse().unwrap());
        assert_eq!(presented(&h), Some(("hdr".into(), Proof::Bearer)));
    }
}

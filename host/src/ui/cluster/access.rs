//! Who is asking and what they may do, on Kubernetes: the bearer token (header, or the
//! HttpOnly cookie the login form sets) is the user's own Kubernetes token; the API server
//! says whose it is (TokenReview) and what that user may do with coffer's resources
//! (SubjectAccessReview). Answers are kept for a few seconds so a page listing many
//! namespaces does not ask the API server the same question twice.

use crate::ui::auth::Token;
use crate::ui::kube_auth::{Ask, KubeAuth, User};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer of the API server is reused. A revoked RoleBinding takes effect on
/// the dashboard within this.
const FRESH: Duration = Duration::from_secs(10);
/// Answers kept at most; past this the cache starts again (a flood of made-up tokens must
/// not grow memory).
const KEPT: usize = 10_000;

/// The person behind a request, as the API server named them.
#[derive(Clone)]
pub struct Viewer {
    pub user: User,
    /// Their token, for the CSRF token derived from it (never rendered).
    pub token: std::sync::Arc<Token>,
    /// Proved by the cookie a browser sends by itself: changes need the CSRF token.
    pub by_cookie: bool,
    key: [u8; 32],
}

impl Viewer {
    pub fn csrf(&self) -> &str {
        self.token.csrf()
    }
}

type Answer = Result<(), String>;
/// Answers by key, with when they were given.
type Kept<K, V> = Mutex<HashMap<K, (V, Instant)>>;

pub struct Access {
    pub auth: KubeAuth,
    users: Kept<[u8; 32], Option<User>>,
    answers: Kept<([u8; 32], String), Answer>,
}

impl Access {
    pub fn new(auth: KubeAuth) -> Access {
        Access {
            auth,
            users: Mutex::default(),
            answers: Mutex::default(),
        }
    }

    /// The viewer `token` belongs to; None when the API server does not accept it.
    pub async fn viewer(&self, token: &str, by_cookie: bool) -> anyhow::Result<Option<Viewer>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = fresh(&self.users, &key);
        let user = match cached {
            Some(u) => u,
            None => {
                let u = self.auth.authenticate(token).await?;
                keep(&self.users, key, u.clone());
                u
            }
        };
        Ok(user.map(|user| Viewer {
            user,
            token: std::sync::Arc::new(Token::new(token.to_string())),
            by_cookie,
            key,
        }))
    }

    /// Whether `v` may do `ask`: Err says why not.
    pub async fn may(&self, v: &Viewer, ask: &Ask<'_>) -> anyhow::Result<Answer> {
        let q = format!(
            "{} {} {} {}",
            ask.verb,
            ask.resource,
            ask.namespace.unwrap_or("*"),
            ask.name.unwrap_or("*")
        );
        let key = (v.key, q);
        if let Some(a) = fresh(&self.answers, &key) {
            return Ok(a);
        }
        let a = self.auth.allowed(&v.user, ask).await?;
        keep(&self.answers, key, a.clone());
        Ok(a)
    }

    /// Whether `v` may `list` `resource` in `ns` (a denial is just no).
    pub async fn may_list(&self, v: &Viewer, resource: &str, ns: &str) -> anyhow::Result<bool> {
        let ask = Ask {
            verb: "list",
            resource,
            namespace: Some(ns),
            name: None,
        };
        Ok(self.may(v, &ask).await?.is_ok())
    }
}

fn fresh<K: std::hash::Hash + Eq, V: Clone>(map: &Kept<K, V>, key: &K) -> Option<V> {
    let m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.get(key)
        .filter(|(_, at)| at.elapsed() < FRESH)
        .map(|(v, _)| v.clone())
}

fn keep<K: std::hash::Hash + Eq, V>(map: &Kept<K, V>, key: K, v: V) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    if m.len() >= KEPT {
        m.clear();
    }
    m.insert(key, (v, Instant::now()));
}

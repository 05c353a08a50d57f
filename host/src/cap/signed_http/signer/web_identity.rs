//! Keys for a web identity (EKS's IAM roles for service accounts, or any OIDC token):
//! `AssumeRoleWithWebIdentity` at STS with the token the file holds (read again at each
//! exchange: the kubelet rotates it), and again before the keys expire.

use super::{Duration, Keys, Mutex, SystemTime};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Keys are exchanged again this long before they expire.
const MARGIN: Duration = Duration::from_secs(300);

pub struct WebIdentity {
    role_arn: String,
    token_file: PathBuf,
    session_name: String,
    /// STS: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the region's.
    sts: String,
    /// The token when the Signer was made ready, for the redactor.
    token: String,
    cached: Mutex<Option<(Arc<Keys>, SystemTime)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    assume_role_with_web_identity_result: AnswerResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

impl WebIdentity {
    pub fn new(
        signer: &str,
        region: &str,
        token_file: PathBuf,
        role_arn: String,
    ) -> Result<WebIdentity, String> {
        let token = read_token(&token_file)?;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sts = var("AWS_ENDPOINT_URL_STS")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        Ok(WebIdentity {
            role_arn,
            token_file,
            session_name: format!("coffer-{signer}"),
            sts: format!("{}/", sts.trim_end_matches('/')),
            token,
            cached: Mutex::new(None),
        })
    }

    pub fn secret_values(&self) -> Vec<String> {
        vec![self.token.clone()]
    }

    pub fn current(&self) -> Result<Arc<Keys>, String> {
        self.cached
            .lock()
            .unwrap()
            .as_ref()
            .map(|(k, _)| k.clone())
            .ok_or_else(|| "the web identity's keys were not fetched from STS yet".into())
    }

    pub async fn refresh(&self, client: &reqwest::Client) -> Result<(), String> {
        let fresh = self
            .cached
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(_, until)| SystemTime::now() + MARGIN < *until);
        if fresh {
            return Ok(());
        }
        let got = self.exchange(client).await?;
        *self.cached.lock().unwrap() = Some(got);
        Ok(())
    }

    async fn exchange(&self, client: &reqwest::Client) -> Result<(Arc<Keys>, SystemTime), String> {
        let token = read_token(&self.token_file)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.role_arn)
            .append_pair("RoleSessionName", &self.session_name)
            .append_pair("WebIdentityToken", &token)
            .finish();
        let failed = |why: String| {
            format!(
                "exchanging the web identity token ({}) for role {} at STS {}: {why}",
                self.token_file.display(),
                self.role_arn,
                self.sts
            )
        };
        let resp = client
            .post(&self.sts)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!(
                "answer {status}: {}",
                crate::redact::clip(text.trim(), 512)
            )));
        }
        let answer: Answer = quick_xml::de::from_str(&text).map_err(|e| {
            failed(format!(
                "an answer that is not AssumeRoleWithWebIdentity's: {e}"
            ))
        })?;
        let c = answer.assume_role_with_web_identity_result.credentials;
        let until = c
            .expiration
            .parse::<jiff::Timestamp>()
            .map(SystemTime::from)
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        tracing::info!(role = %self.role_arn, "exchanged the web identity token for keys");
        Ok((
            Arc::new(Keys {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: Some(c.session_token),
            }),
            until,
        ))
    }
}

fn read_token(file: &PathBuf) -> Result<String, String> {
    let t = std::fs::read_to_string(file)
        .map_err(|e| format!("AWS_WEB_IDENTITY_TOKEN_FILE {}: {e}", file.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(format!(
            "AWS_WEB_IDENTITY_TOKEN_FILE {} is empty",
            file.display()
        ));
    }
    Ok(t)
}

//! The Signer's secrets never reach the plugin in an answer: an endpoint that echoes the
//! request (a debugging proxy, a misconfigured gateway, an attacker's endpoint the grant
//! happens to allow) would hand back `x-amz-security-token`. The action's redactor is
//! made when it starts, before a web identity's keys are fetched from STS, so the answer
//! is scrubbed here with the keys the request was signed with.

const REDACTED: &[u8] = b"[redacted]";

/// `bytes` with every occurrence of each secret replaced.
pub fn scrub(bytes: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    let mut out = bytes;
    // Short values would match by chance; keys and tokens are long.
    for s in secrets
        .iter()
        .map(String::as_bytes)
        .filter(|s| s.len() >= 8)
    {
        if !out.windows(s.len()).any(|w| w == s) {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(s) {
                next.extend_from_slice(REDACTED);
                i += s.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

pub fn scrub_text(text: String, secrets: &[String]) -> String {
    String::from_utf8_lossy(&scrub(text.into_bytes(), secrets)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::signer::ReadySigner;
    use super::super::{Checked, Signers};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn every_occurrence_goes_and_short_values_stay() {
        let s = vec!["SESSIONTOKEN42".to_string(), "abc".to_string()];
        let got = scrub(b"a SESSIONTOKEN42 b SESSIONTOKEN42abc".to_vec(), &s);
        assert_eq!(got, b"a [redacted] b [redacted]abc");
    }

    /// An endpoint that answers with the request it got (headers included).
    #[tokio::test]
    async fn an_echoing_endpoint_gives_back_no_session_token_or_secret_key() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 16 << 10];
            let n = conn.read(&mut buf).await.unwrap();
            let echo = String::from_utf8_lossy(&buf[..n]).into_owned();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-echo: {}\r\nconnection: close\r\n\r\n{echo}",
                echo.len(),
                echo.lines()
                    .find(|l| l.starts_with("x-amz-security-token"))
                    .unwrap_or_default()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
        });
        let endpoint = format!("http://127.0.0.1:{port}");
        let signer = ReadySigner::for_test_with_token(
            "aws",
            "us-east-1",
            &endpoint,
            "SECRETKEY-0123456789",
            "SESSIONTOKEN-abcdefghij",
        );
        let signers = Signers::new(vec![signer]).unwrap();
        let checked = Checked {
            signer: "aws".into(),
            service: "rds".into(),
            method: "POST".into(),
            url: url::Url::parse(&format!("{endpoint}/")).unwrap(),
            headers: vec![],
            // A plugin could also put what it guesses in the body; the key never reaches it.
            body: b"Action=DescribeDBInstances&Echo=SECRETKEY-0123456789".to_vec(),
        };
        let r = signers.dispatch(&checked).await.unwrap();
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("x-amz-security-token"), "{body}");
        assert!(!body.contains("SESSIONTOKEN-abcdefghij"), "{body}");
        assert!(!body.contains("SECRETKEY-0123456789"), "{body}");
        let echoed = r.headers.iter().find(|(k, _)| k == "x-echo").unwrap();
        assert!(!echoed.1.contains("SESSIONTOKEN-abcdefghij"), "{echoed:?}");
    }
}

//! Removing known secret values from text before it is logged, stored or shown.

const MASK: &str = "[REDACTED]";

/// At most `max` bytes of `s`, cut at a character boundary (plugin-supplied strings are
/// clipped before they are kept anywhere).
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The secret values of one action. Every string that leaves the host's hands (stderr
/// tails, errors, plugin logs) goes through [`Redactor::redact`].
#[derive(Default, Clone)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    pub fn add(&mut self, value: &str) {
        let v = value.trim_end_matches(['\n', '\r']);
        if !v.is_empty() && !self.values.iter().any(|x| x == v) {
            self.values.push(v.to_string());
            // Longest first, so a secret that contains another is masked whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Redact the tail of a byte buffer: the buffer may start in the middle of a secret, so
    /// callers keep `longest()` extra bytes before the tail and cut after redacting.
    pub fn redact_tail(&self, bytes: &[u8], keep: usize) -> String {
        let text = String::from_utf8_lossy(bytes);
        let red = self.redact(&text);
        if red.len() <= keep {
            return red;
        }
        let mut cut = red.len() - keep;
        while !red.is_char_boundary(cut) {
            cut += 1;
        }
        red[cut..].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence() {
        let mut r = Redactor::new();
        r.add("hunter2\n");
        r.add("hunter2-long");
        assert_eq!(
            r.redact("pw=hunter2-long and hunter2"),
            "pw=[REDACTED] and [REDACTED]"
        );
        let mut buf = b"xxxxhunter2 failed".to_vec();
        buf.drain(..2);
        assert_eq!(r.redact_tail(&buf, 100), "xx[REDACTED] failed");
    }
}

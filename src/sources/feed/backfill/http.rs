//! One GET to a vendor's REST API, bounded and with its status given a meaning: the
//! deadline (`feed.backfill_timeout_ms` for connect, headers and body together), a
//! cap on the body, no redirects, and 401/403, 429, 5xx and the rest turned into the
//! [`BackfillError`] the caller acts on.
//!
//! Keys ride in URLs (Polygon's `apiKey`, Finnhub's `token`), so no URL ever reaches
//! an error message or a log: reqwest's errors are stripped of theirs.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::{BackfillError, Origin};
use crate::config::FeedSettings;

/// Largest body read. Alpaca's page of 10,000 bars is about 1.2 MB and Polygon's of
/// 50,000 about 5 MB; beyond this a vendor is broken, and memory stays bounded.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Most of an error body kept for the message (Finnhub's `{"error":…}`, Polygon's
/// `{"message":…}`).
const MAX_MESSAGE_CHARS: usize = 200;

/// The HTTP client for backfill: HTTPS with rustls and the compiled-in Mozilla roots
/// (as the vendor WebSockets), every request bounded by `feed.backfill_timeout_ms`.
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct BackfillClient {
    http: reqwest::Client,
    timeout_ms: u64,
}

impl BackfillClient {
    pub fn new(settings: &FeedSettings) -> anyhow::Result<BackfillClient> {
        let timeout = Duration::from_millis(settings.backfill_timeout_ms);
        let http = reqwest::Client::builder()
            // The whole exchange, body included, not just the connect.
            .timeout(timeout)
            .connect_timeout(timeout)
            // The vendors' APIs do not redirect; following one could carry a key in
            // the query string to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tickstream/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the backfill HTTP client")?;
        Ok(BackfillClient {
            http,
            timeout_ms: settings.backfill_timeout_ms,
        })
    }

    /// GETs `url` with `headers`; the body of a 2xx answer, as text.
    pub(super) async fn get(
        &self,
        at: &Origin,
        url: Url,
        headers: &[(&'static str, &str)],
    ) -> Result<String, BackfillError> {
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| self.failed(at, e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = self.body(at, response).await?;
        if status.is_success() {
            return String::from_utf8(body).map_err(|_| BackfillError::Malformed {
                at: at.clone(),
                reason: "body is not UTF-8".to_owned(),
            });
        }
        Err(status_error(at, status, &body, retry_after))
    }

    /// Reads the body chunk by chunk, refusing past [`MAX_BODY_BYTES`] without
    /// reading the rest.
    async fn body(
        &self,
        at: &Origin,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, BackfillError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(at, e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(BackfillError::TooLarge {
                    at: at.clone(),
                    what: "body bytes",
                    limit: MAX_BODY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn failed(&self, at: &Origin, error: reqwest::Error) -> BackfillError {
        if error.is_timeout() {
            return BackfillError::Timeout {
                at: at.clone(),
                timeout_ms: self.timeout_ms,
            };
        }
        // The causes (connection refused, TLS) say more than "error sending request".
        let error = error.without_url();
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(e) = cause {
            message.push_str(": ");
            message.push_str(&e.to_string());
            cause = e.source();
        }
        BackfillError::Transport {
            at: at.clone(),
            message,
        }
    }
}

/// The error for a non-2xx answer.
fn status_error(
    at: &Origin,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> BackfillError {
    let at = at.clone();
    let code = status.as_u16();
    match code {
        401 | 403 => BackfillError::NotEntitled {
            at,
            status: code,
            message: message(body),
        },
        429 => BackfillError::RateLimited { at, retry_after },
        500..=599 => BackfillError::Unavailable { at, status: code },
        _ => BackfillError::Rejected {
            at,
            status: code,
            message: message(body),
        },
    }
}

/// The vendor's explanation: the `error` or `message` string of a JSON body
/// (Finnhub, Polygon, Alpaca), else the start of the body; one line, bounded.
fn message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Explained {
        error: Option<String>,
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Explained>(body) {
        Ok(Explained {
            error: Some(text), ..
        })
        | Ok(Explained {
            message: Some(text),
            ..
        }) => text,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if line.is_empty() {
        "(no message)".to_owned()
    } else {
        line
    }
}

/// `Retry-After` as seconds (`30`) or an HTTP date, from `now`.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            retry_after(&headers, now)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            with("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(with("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_messages_are_the_vendors_words_on_one_bounded_line() {
        assert_eq!(
            message(br#"{"error":"You don't have access to this resource."}"#),
            "You don't have access to this resource."
        );
        assert_eq!(
            message(
                br#"{"status":"NOT_AUTHORIZED","message":"You are not entitled to this data."}"#
            ),
            "You are not entitled to this data."
        );
        assert_eq!(
            message(b"<html>\n  Bad   Gateway\n</html>"),
            "<html> Bad Gateway </html>"
        );
        assert_eq!(message(b""), "(no message)");
        assert_eq!(message(&[b'x'; 1000]).len(), MAX_MESSAGE_CHARS);
    }
}

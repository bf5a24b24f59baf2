use actix_web::dev::RequestHead;
use actix_web::http::header;

/// Whether a WebSocket upgrade may proceed, against cross-site WebSocket hijacking:
/// browsers always send `Origin`, so a page on another site cannot open a socket with
/// the user's cookies or network position unless its origin is allowed. Requests
/// without `Origin` come from non-browser clients and are not affected.
pub fn origin_allowed(req: &RequestHead, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // Same origin: the Origin's host[:port] equals the Host the browser connected to.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.trim_end_matches('/'));
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn check(origin: Option<&str>, host: &str, allowed: &[&str]) -> bool {
        let mut req = TestRequest::default().insert_header(("Host", host));
        if let Some(origin) = origin {
            req = req.insert_header(("Origin", origin));
        }
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        origin_allowed(req.to_http_request().head(), &allowed)
    }

    #[test]
    fn same_origin_listed_origins_and_non_browsers_pass() {
        assert!(check(None, "ticks.example.com", &[]));
        assert!(check(
            Some("https://ticks.example.com"),
            "ticks.example.com",
            &[]
        ));
        assert!(check(Some("http://127.0.0.1:8080"), "127.0.0.1:8080", &[]));
        assert!(check(
            Some("https://dash.example.org"),
            "ticks.example.com",
            &["https://dash.example.org"]
        ));
        assert!(check(Some("https://anything.test"), "x", &["*"]));
    }

    #[test]
    fn foreign_origins_are_refused() {
        assert!(!check(Some("https://evil.test"), "ticks.example.com", &[]));
        assert!(!check(
            Some("https://ticks.example.com.evil.test"),
            "ticks.example.com",
            &[]
        ));
        assert!(!check(Some("null"), "ticks.example.com", &[]));
        assert!(!check(
            Some("http://127.0.0.1:9999"),
            "127.0.0.1:8080",
            &["https://dash.example.org"]
        ));
    }
}

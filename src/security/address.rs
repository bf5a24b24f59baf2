use std::net::{IpAddr, Ipv4Addr};

use actix_web::dev::RequestHead;

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
/// Untrusted peers cannot spoof their address with the header.
pub fn client_ip(req: &RequestHead, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = req
        .peer_addr
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = req
        .headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted_proxies.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.2"))
            .to_http_request();
        assert_eq!(
            client_ip(req.head(), &[proxy, ip("10.0.0.2")]),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(req.head(), &[]),
            proxy,
            "untrusted peer: the header is ignored"
        );
        let direct = TestRequest::default()
            .peer_addr("9.9.9.9:1".parse().unwrap())
            .insert_header(("X-Forwarded-For", "1.1.1.1"))
            .to_http_request();
        assert_eq!(client_ip(direct.head(), &[proxy]), ip("9.9.9.9"));
    }
}

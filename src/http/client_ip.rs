//! Which address a request comes from, believing forwarding headers only from
//! trusted proxies.
//!
//! The socket peer is the client unless it is listed in `TRUSTED_PROXIES`. Then the
//! forwarding chain, from the one header the proxies are configured to write
//! (`TRUSTED_PROXY_HEADER`: `X-Forwarded-For` or `Forwarded`; the other is ignored,
//! since a proxy passes through whatever a client put in a header it does not write),
//! is read from the right, skipping trusted hops; the first untrusted hop is the
//! client. Anything left of it was written by the client itself and is never believed.
//! A hop that cannot be parsed ends the walk at the last address that could be, so a
//! malformed header can never move the answer further left than an honest one would.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

pub use crate::config::ForwardingHeader;

/// The client address, as resolved once per request by [`attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    pub nets: Vec<IpNet>,
    pub header: ForwardingHeader,
}

/// Puts the resolved [`ClientIp`] into the request's extensions (when the socket
/// address is known).
pub fn attach<B>(trusted: &TrustedProxies, mut req: Request<B>) -> Request<B> {
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
        let ip = resolve(peer, req.headers(), trusted);
        req.extensions_mut().insert(ClientIp(ip));
    }
    req
}

pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address for a request from `peer` carrying `headers`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, &trusted.nets) {
        return peer;
    }
    let hops = match trusted.header {
        ForwardingHeader::XForwardedFor => x_forwarded_for_hops(headers),
        ForwardingHeader::Forwarded => forwarded_hops(headers),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip, &trusted.nets) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The hops of an RFC 7239 `Forwarded` chain, left (original client) to right
/// (nearest proxy); `None` for a hop that is not an address (`unknown`, an obfuscated
/// name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("for=invalid").split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_node(v))
        })
        .collect()
}

/// The hops of `X-Forwarded-For`, as [`forwarded_hops`].
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("invalid").split(','))
        .map(parse_node)
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:80"`,
/// `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusting(nets: &[&str], header: ForwardingHeader) -> TrustedProxies {
        TrustedProxies {
            nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
            header,
        }
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(resolve(ip("9.9.9.9"), &h, &TrustedProxies::default()), ip("9.9.9.9"));
        let trusted = trusting(&["10.0.0.0/8"], ForwardingHeader::XForwardedFor);
        assert_eq!(resolve(ip("9.9.9.9"), &h, &trusted), ip("9.9.9.9"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The proxy writes X-Forwarded-For; a Forwarded header came from the client.
        let h = headers(&[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "1.2.3.4")]);
        let xff = trusting(&["10.0.0.0/8"], ForwardingHeader::XForwardedFor);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &xff), ip("1.2.3.4"));
        let fwd = trusting(&["10.0.0.0/8"], ForwardingHeader::Forwarded);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &fwd), ip("6.6.6.6"));
    }

    #[test]
    fn the_right_most_untrusted_hop_wins() {
        let trusted = trusting(&["10.0.0.0/8", "::1/128"], ForwardingHeader::XForwardedFor);
        // The client forged 6.6.6.6 in front; the proxy appended the real 1.2.3.4.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        // Repeated headers are one list.
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(resolve(ip("::1"), &h, &trusted), ip("1.2.3.4"));
        // Forwarded (RFC 7239), with ports, quotes and IPv6 brackets.
        let h = headers(&[("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https")]);
        let fwd = trusting(&["10.0.0.0/8"], ForwardingHeader::Forwarded);
        assert_eq!(resolve(ip("10.1.1.1"), &h, &fwd), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=\"[::ffff:1.2.3.4]:80\"")]);
        assert_eq!(resolve(ip("10.1.1.1"), &h, &fwd), ip("1.2.3.4"));
        // Every hop trusted: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        // No header at all: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.1"), &HeaderMap::new(), &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_hops_stop_the_walk() {
        let trusted = trusting(&["10.0.0.0/8"], ForwardingHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=unknown")]);
        let fwd = trusting(&["10.0.0.0/8"], ForwardingHeader::Forwarded);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &fwd), ip("10.0.0.1"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4:8080")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn mapped_ipv4_is_plain_ipv4() {
        assert_eq!(
            resolve(ip("::ffff:1.2.3.4"), &HeaderMap::new(), &TrustedProxies::default()),
            ip("1.2.3.4")
        );
    }
}

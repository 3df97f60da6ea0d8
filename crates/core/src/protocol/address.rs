//! The caller's network address, as Cloudflare reports it (`CF-Connecting-IP`): checked before it
//! is used, and grouped the way one party holds addresses (an IPv6 /64 is one network).

use std::net::{IpAddr, Ipv6Addr};

/// The caller's address from a `CF-Connecting-IP` value; `None` when there is none or it is not
/// an IP address. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address it maps.
pub fn client_address(header: Option<&str>) -> Option<IpAddr> {
    let ip: IpAddr = header?.trim().parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// The group of addresses one party is counted as, for sign-in limits: the whole address for
/// IPv4, the /64 prefix for IPv6 (one subscriber, one LAN: anyone given a /64 can use every
/// address in it, so counting per address would give them 2^64 fresh counters).
pub fn address_group(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            let prefix = Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// `Forwarded` (RFC 7239) and `X-Forwarded-For` values naming `ip` as the client, for the origin.
pub fn forwarded_values(ip: IpAddr) -> (String, String) {
    let forwarded = match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        // RFC 7239 §6: an IPv6 node is bracketed and, with its `:`s, quoted.
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    (forwarded, ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(h: &str) -> Option<String> {
        client_address(Some(h)).map(address_group)
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_prefix() {
        assert_eq!(
            group("2001:db8:1:2::1").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(
            group("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            group("2001:db8:1:2::1"),
            "one /64, one group"
        );
        assert_ne!(group("2001:db8:1:3::1"), group("2001:db8:1:2::1"));
        assert_eq!(
            group("2001:DB8:1:2:0:0:0:7"),
            group("2001:db8:1:2::7"),
            "every spelling of one address is one group"
        );
    }

    #[test]
    fn ipv4_addresses_are_their_own_group_also_when_mapped_into_ipv6() {
        assert_eq!(group("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_ne!(group("192.0.2.7"), group("192.0.2.8"));
        assert_eq!(group("::ffff:192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(group("::ffff:c000:207").as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn what_is_not_an_address_is_none() {
        for bad in [
            "",
            "unknown",
            "192.0.2.7, 10.0.0.1",
            "2001:db8::1%eth0",
            "[2001:db8::1]",
            "300.1.1.1",
            "192.0.2.7:443",
        ] {
            assert_eq!(client_address(Some(bad)), None, "{bad}");
        }
        assert_eq!(client_address(None), None);
    }

    #[test]
    fn forwarded_values_quote_ipv6_and_name_ipv4_plainly() {
        let v4 = client_address(Some("192.0.2.7")).unwrap();
        assert_eq!(
            forwarded_values(v4),
            ("for=192.0.2.7".to_owned(), "192.0.2.7".to_owned())
        );
        let v6 = client_address(Some("2001:db8::1")).unwrap();
        assert_eq!(
            forwarded_values(v6),
            ("for=\"[2001:db8::1]\"".to_owned(), "2001:db8::1".to_owned())
        );
    }
}

//! The end user's network address, as the redemption limits count it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Where an end user's request came from, as one limit subject: an IPv4 address, or the /64
/// an IPv6 address is in (one household or one device is usually given a whole /64, so each of
/// its addresses counting alone would multiply the limits by 2^64). An IPv4 address mapped
/// into IPv6 (`::ffff:203.0.113.7`) is that IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    /// The subject `ip` counts as.
    pub fn of(ip: IpAddr) -> ClientAddress {
        match ip {
            IpAddr::V4(v4) => ClientAddress(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddress(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientAddress(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }

    /// The last address of a proxy header's comma-separated list (`X-Forwarded-For: client,
    /// proxy1`): the one the trusted proxy itself added. `None` when it is not an address.
    pub fn from_header(value: &str) -> Option<ClientAddress> {
        let last = value.rsplit(',').next()?.trim();
        last.parse::<IpAddr>().ok().map(ClientAddress::of)
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> String {
        ClientAddress::of(text.parse().unwrap()).to_string()
    }

    #[test]
    fn an_ipv4_address_counts_alone_and_an_ipv6_one_by_its_64() {
        assert_eq!(of("203.0.113.7"), "203.0.113.7");
        assert_eq!(of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn a_proxy_header_counts_its_last_address_only() {
        let header = |v: &str| ClientAddress::from_header(v).map(|a| a.to_string());
        assert_eq!(
            header("198.51.100.1, 203.0.113.7"),
            Some("203.0.113.7".into())
        );
        assert_eq!(header(" 2001:db8::5 "), Some("2001:db8::/64".into()));
        assert_eq!(header("203.0.113.7, nonsense"), None);
        assert_eq!(header(""), None);
    }
}

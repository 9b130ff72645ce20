//! The ranges Services draw from: the service CIDR (`--service-cluster-ip-range`,
//! IPv4) and the node port range (`--service-node-port-range`). Pure: which
//! addresses a range holds and which free one to take, as Kubernetes' IP
//! allocator picks them (dynamic addresses from the upper band first, so
//! the lower band stays free for addresses users ask for by number).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// Where Services get their cluster IPs and node ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub cidr: Cidr,
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceNetwork {
    fn default() -> ServiceNetwork {
        ServiceNetwork {
            cidr: Cidr::parse(DEFAULT_CIDR).expect("the default service CIDR parses"),
            node_ports: 30000..=32767,
        }
    }
}

/// Kubernetes' default service CIDR and node port range.
pub const DEFAULT_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_NODE_PORTS: &str = "30000-32767";

/// An IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    bits: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

impl Cidr {
    /// `a.b.c.d/n` with `n` in 8..=30 (a service range needs at least two
    /// usable addresses; Kubernetes refuses IPv4 ranges wider than /8... and
    /// narrower ones than hold a network and broadcast address and one more).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: only IPv4 service ranges are served"))?;
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| (8..=30).contains(b))
            .ok_or_else(|| format!("{s:?}: the prefix length must be between 8 and 30"))?;
        let mask = u32::MAX << (32 - bits);
        Ok(Cidr {
            base: u32::from(ip) & mask,
            bits,
        })
    }

    /// How many addresses a Service may get: all but the network and the
    /// broadcast address.
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - self.bits)) - 2
    }

    /// The `i`-th usable address (0-based): the network address plus `i + 1`.
    pub fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + i)
    }

    /// The index of `ip` among the usable addresses, if it is one.
    pub fn index(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).checked_sub(self.base)?;
        (off >= 1 && off <= self.usable()).then(|| off - 1)
    }

    /// How many of the first usable addresses are kept for addresses asked
    /// for by number (Kubernetes' `calculateRangeOffset`: a sixteenth of the
    /// range, at least 16 and at most 256; none for ranges under 16).
    pub fn lower_band(&self) -> u32 {
        let size = self.usable();
        if size < 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }
}

/// Parse `lo-hi` (Kubernetes' `--service-node-port-range`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range (e.g. 30000-32767)");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// A free index in `0..size`, scanning from `start` (a random draw) and
/// wrapping; addresses in `0..reserved` are taken only when the rest are
/// all in use. `None`: everything is taken.
pub fn pick_free(size: u32, reserved: u32, used: &BTreeSet<u32>, start: u32) -> Option<u32> {
    let scan = |lo: u32, hi: u32| -> Option<u32> {
        if lo >= hi {
            return None;
        }
        let n = hi - lo;
        let first = lo + start % n;
        (first..hi).chain(lo..first).find(|i| !used.contains(i))
    };
    scan(reserved.min(size), size).or_else(|| scan(0, reserved.min(size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_count_and_index_their_usable_addresses() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.usable(), (1 << 20) - 2);
        assert_eq!(c.nth(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(c.index(Ipv4Addr::new(10, 96, 0, 10)), Some(9));
        assert_eq!(c.index(Ipv4Addr::new(10, 96, 0, 0)), None, "network");
        assert_eq!(c.index(Ipv4Addr::new(10, 111, 255, 255)), None, "broadcast");
        assert_eq!(c.index(Ipv4Addr::new(10, 112, 0, 1)), None, "outside");
        assert_eq!(c.lower_band(), 256);
        let small = Cidr::parse("10.0.0.7/28").unwrap();
        assert_eq!(small.to_string(), "10.0.0.0/28");
        assert_eq!((small.usable(), small.lower_band()), (14, 0));
        assert_eq!(Cidr::parse("10.0.0.0/24").unwrap().lower_band(), 16);
        for bad in ["10.0.0.0", "10.0.0.0/31", "fd00::/108", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn free_addresses_come_from_the_upper_band_first() {
        let used: BTreeSet<u32> = [16, 17, 19].into();
        // From a draw that lands on a used address, the next free one.
        assert_eq!(pick_free(20, 16, &used, 0), Some(18));
        // Wrapping within the upper band.
        let used: BTreeSet<u32> = [18, 19].into();
        assert_eq!(pick_free(20, 16, &used, 2), Some(16));
        // The upper band full: the lower band.
        let used: BTreeSet<u32> = (16..20).collect();
        assert_eq!(pick_free(20, 16, &used, 5), Some(5));
        let used: BTreeSet<u32> = (0..20).collect();
        assert_eq!(pick_free(20, 16, &used, 5), None);
        assert_eq!(pick_free(3, 0, &BTreeSet::new(), 7), Some(1));
    }

    #[test]
    fn port_ranges_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_port_range("30000-32767"), Ok(30000..=32767));
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("30000").is_err());
    }
}

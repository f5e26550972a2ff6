//! The synthetic event stream shared by the store benchmarks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use takedown_event::{Asn, Event, EventKind, Network, Timestamp};

/// A deterministic stream of sinkhole check-ins from `hosts` distinct addresses.
pub(crate) struct Gen {
    x: u64,
    n: u64,
    hosts: u32,
    start: i64,
}

impl Gen {
    /// A stream from `hosts` distinct addresses, starting now.
    pub(crate) fn new(seed: u64, hosts: u32) -> Self {
        Gen {
            x: seed | 1,
            n: 0,
            hosts,
            start: Timestamp::now().0,
        }
    }

    fn next_rand(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }

    pub(crate) fn event(&mut self) -> Event {
        let r = self.next_rand();
        self.n += 1;
        let host = (r % u64::from(self.hosts)) as u32;
        let ip = Ipv4Addr::from(0x0a00_0000u32 + host * 7);
        let kind = match r >> 60 {
            0 => EventKind::Dns,
            1..=4 => EventKind::Tcp,
            _ => EventKind::Http,
        };
        // Roughly 20k events per second of sinkhole time.
        let ts = Timestamp(self.start + (self.n as i64) * 50);
        let mut e = Event::new(
            ts,
            kind,
            SocketAddr::new(IpAddr::V4(ip), 1024 + (r >> 20) as u16 % 60000),
            "198.51.100.1:80".parse().expect("literal"),
            "sh1".parse().expect("literal"),
        );
        let fam = [
            "rustock",
            "kelihos",
            "conficker",
            "gameover",
            "necurs",
            "emotet",
        ];
        e.family = fam[host as usize % fam.len()].parse().ok();
        if kind == EventKind::Http {
            e.http_method = Some("POST".into());
            e.http_url = Some(format!("/gate.php?id={:016x}", r >> 8));
            e.http_host = Some("c2-botnet.example".into());
            e.http_agent = Some("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)".into());
        }
        if kind == EventKind::Dns {
            e.dns_qname = Some("c2-botnet.example".into());
            e.dns_qtype = Some("A".into());
        }
        e.network = Some(Network {
            prefix: format!("{}/16", Ipv4Addr::from(u32::from(ip) & 0xffff_0000))
                .parse()
                .ok(),
            asn: Some(Asn(64512 + host % 500)),
            as_name: Some(format!("EXAMPLE-NET-{}", host % 500)),
            country: ["DE", "US", "BR", "IN", "VN"][host as usize % 5]
                .parse()
                .ok(),
        });
        e
    }

    pub(crate) fn batch(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.event()).collect()
    }
}

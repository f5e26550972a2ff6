//! Shadowserver's sinkhole reports: `event4_sinkhole_http` and `event4_sinkhole`
//! (and their IPv6 and Microsoft twins, which share the columns).

use std::fmt;
use std::io::Read;

use csv::ByteRecord;
use takedown_event::{Event, EventKind, Network, SensorId, Transport};

use super::crlf::CrlfToLf;
use super::{RowError, fields};
use crate::Error;

/// The columns of the current `event4_sinkhole_http` report, in order.
const SINKHOLE_HTTP: &[&str] = &[
    "timestamp",
    "protocol",
    "src_ip",
    "src_port",
    "src_asn",
    "src_geo",
    "src_region",
    "src_city",
    "src_hostname",
    "src_naics",
    "src_sector",
    "device_vendor",
    "device_type",
    "device_model",
    "severity",
    "dst_ip",
    "dst_port",
    "dst_asn",
    "dst_geo",
    "dst_region",
    "dst_city",
    "dst_hostname",
    "dst_naics",
    "dst_sector",
    "public_source",
    "infection",
    "family",
    "tag",
    "application",
    "version",
    "event_id",
    "http_url",
    "http_host",
    "http_agent",
    "forwarded_by",
    "ssl_cipher",
    "http_referer",
    "ssl_servername",
    "machine_name",
];

/// The columns of the current `event4_sinkhole` (non-HTTP) report, in order.
const SINKHOLE: &[&str] = &[
    "timestamp",
    "protocol",
    "src_ip",
    "src_port",
    "src_asn",
    "src_geo",
    "src_region",
    "src_city",
    "src_hostname",
    "src_naics",
    "src_sector",
    "device_vendor",
    "device_type",
    "device_model",
    "severity",
    "dst_ip",
    "dst_port",
    "dst_asn",
    "dst_geo",
    "dst_region",
    "dst_city",
    "dst_hostname",
    "dst_naics",
    "dst_sector",
    "public_source",
    "infection",
    "family",
    "tag",
    "application",
    "version",
    "event_id",
    "ssl_cipher",
    "ssl_servername",
];

/// Which Shadowserver report a file is, as told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Report {
    /// "Sinkhole Events HTTP" (`event4_sinkhole_http`, `event6_sinkhole_http`,
    /// `event4_microsoft_sinkhole_http`), with the current columns exactly.
    SinkholeHttp,
    /// "Sinkhole Events" (`event4_sinkhole`, `event6_sinkhole`), non-HTTP, with
    /// the current columns exactly.
    Sinkhole,
    /// A header that differs from the current reports (an older or newer
    /// revision) but names the columns an event needs; `http` tells whether it
    /// carries HTTP columns.
    Compatible {
        /// Whether the header has HTTP columns (`http_url`, `http_host` or `http_agent`).
        http: bool,
    },
}

impl Report {
    /// The kind of event this report's rows become.
    pub fn kind(self) -> EventKind {
        match self {
            Report::SinkholeHttp | Report::Compatible { http: true } => EventKind::Http,
            Report::Sinkhole | Report::Compatible { http: false } => EventKind::Tcp,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Report::SinkholeHttp => "event4_sinkhole_http",
            Report::Sinkhole => "event4_sinkhole",
            Report::Compatible { http: true } => "sinkhole_http (other revision)",
            Report::Compatible { http: false } => "sinkhole (other revision)",
        })
    }
}

/// Column positions of the fields an event takes, found once from the header.
#[derive(Debug, Clone, Default)]
struct Columns {
    timestamp: usize,
    src_ip: usize,
    protocol: Option<usize>,
    src_port: Option<usize>,
    src_asn: Option<usize>,
    src_geo: Option<usize>,
    dst_ip: Option<usize>,
    dst_port: Option<usize>,
    infection: Option<usize>,
    tag: Option<usize>,
    http_url: Option<usize>,
    http_host: Option<usize>,
    http_agent: Option<usize>,
    http_referer: Option<usize>,
    ssl_servername: Option<usize>,
}

/// Reads events from a Shadowserver sinkhole report in CSV.
///
/// Rows keep Shadowserver's `src_asn` and `src_geo` as the event's network;
/// the ingest pipeline's enrichment replaces them where local data knows
/// better, so imported and live events are attributed alike.
pub struct ShadowserverReader<R: Read> {
    rdr: csv::Reader<CrlfToLf<R>>,
    record: ByteRecord,
    cols: Columns,
    n_fields: usize,
    report: Report,
    sensor: SensorId,
}

impl<R: Read> fmt::Debug for ShadowserverReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowserverReader")
            .field("report", &self.report)
            .field("sensor", &self.sensor)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ShadowserverReader<R> {
    /// Reads the header and works out which report this is.
    pub fn new(input: R, sensor: SensorId) -> Result<Self, Error> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(CrlfToLf::new(input));
        let mut header = ByteRecord::new();
        let got = rdr.read_byte_record(&mut header).map_err(csv_fatal)?;
        if !got {
            return Err(Error::Header {
                reason: "the input is empty".into(),
            });
        }
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, f)| {
                // A byte-order mark sometimes precedes the first column name.
                let f = if i == 0 {
                    f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f)
                } else {
                    f
                };
                String::from_utf8_lossy(f.trim_ascii()).to_ascii_lowercase()
            })
            .collect();
        let (cols, report) = columns(&names)?;
        Ok(ShadowserverReader {
            rdr,
            record: ByteRecord::new(),
            cols,
            n_fields: names.len(),
            report,
            sensor,
        })
    }

    /// The report the header identified.
    pub fn report(&self) -> Report {
        self.report
    }

    /// The next row as an event, `Ok(Some(Err(_)))` for a bad row, `Ok(None)` at the end.
    ///
    /// Only input failures are `Err`: a bad row never stops the reader.
    pub fn next_event(&mut self) -> Result<Option<Result<Event, RowError>>, Error> {
        loop {
            match self.rdr.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if e.is_io_error() {
                        return Err(csv_fatal(e));
                    }
                    return Ok(Some(Err(RowError {
                        line,
                        reason: e.to_string(),
                    })));
                }
            }
            let line = self.record.position().map_or(0, |p| p.line());
            // A blank line between rows is noise, not a bad row.
            if self.record.len() == 1 && self.record.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            return Ok(Some(self.event(line)));
        }
    }

    fn event(&self, line: u64) -> Result<Event, RowError> {
        let r = &self.record;
        let bad = |reason: String| RowError { line, reason };
        if r.len() != self.n_fields {
            return Err(bad(format!(
                "expected {} fields as in the header, found {}",
                self.n_fields,
                r.len()
            )));
        }
        let c = &self.cols;
        let get = |i: Option<usize>| i.and_then(|i| r.get(i)).unwrap_or(b"");
        let raw_ts = get(Some(c.timestamp));
        let timestamp = fields::timestamp(raw_ts)
            .ok_or_else(|| bad(format!("invalid timestamp {:?}", lossy(raw_ts))))?;
        let raw_ip = get(Some(c.src_ip));
        let src_ip =
            fields::ip(raw_ip).ok_or_else(|| bad(format!("invalid src_ip {:?}", lossy(raw_ip))))?;
        let src_port = fields::port(get(c.src_port))
            .ok_or_else(|| bad(format!("invalid src_port {:?}", lossy(get(c.src_port)))))?;
        let raw_dst = get(c.dst_ip).trim_ascii();
        let dst_ip = if raw_dst.is_empty() {
            // Some rows withhold the sinkhole address; keep the family of the source.
            match src_ip {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            }
        } else {
            fields::ip(raw_dst)
                .ok_or_else(|| bad(format!("invalid dst_ip {:?}", lossy(raw_dst))))?
        };
        let dst_port = fields::port(get(c.dst_port))
            .ok_or_else(|| bad(format!("invalid dst_port {:?}", lossy(get(c.dst_port)))))?;
        let protocol = match get(c.protocol).trim_ascii() {
            b"" => Transport::Tcp,
            p if p.eq_ignore_ascii_case(b"tcp") => Transport::Tcp,
            p if p.eq_ignore_ascii_case(b"udp") => Transport::Udp,
            p => return Err(bad(format!("invalid protocol {:?}", lossy(p)))),
        };
        let asn = fields::asn(get(c.src_asn));
        let country = fields::country(get(c.src_geo));
        let network = (asn.is_some() || country.is_some()).then_some(Network {
            prefix: None,
            asn,
            as_name: None,
            country,
        });
        Ok(Event {
            timestamp,
            kind: self.report.kind(),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            protocol,
            http_method: None,
            http_url: fields::text(get(c.http_url)),
            http_host: fields::text(get(c.http_host)),
            http_agent: fields::text(get(c.http_agent)),
            http_referer: fields::text(get(c.http_referer)),
            tls_sni: fields::text(get(c.ssl_servername)),
            dns_qname: None,
            dns_qtype: None,
            payload: None,
            family: fields::family(get(c.infection)),
            tag: fields::text(get(c.tag)),
            sensor: self.sensor.clone(),
            malformed: false,
            network,
        })
    }
}

fn lossy(b: &[u8]) -> String {
    let b = b.get(..64).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

fn csv_fatal(e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => Error::Io(e),
        other => Error::Header {
            reason: format!("{other:?}"),
        },
    }
}

fn columns(names: &[String]) -> Result<(Columns, Report), Error> {
    let find = |n: &str| names.iter().position(|h| h == n);
    let (Some(timestamp), Some(src_ip)) = (find("timestamp"), find("src_ip")) else {
        return Err(Error::Header {
            reason: format!(
                "not a Shadowserver sinkhole report: the header needs `timestamp` and `src_ip` \
                 columns but has {:?}",
                names.iter().take(8).collect::<Vec<_>>()
            ),
        });
    };
    let cols = Columns {
        timestamp,
        src_ip,
        protocol: find("protocol"),
        src_port: find("src_port"),
        src_asn: find("src_asn").or_else(|| find("asn")),
        src_geo: find("src_geo").or_else(|| find("geo")),
        dst_ip: find("dst_ip"),
        dst_port: find("dst_port"),
        infection: find("infection"),
        tag: find("tag"),
        http_url: find("http_url"),
        http_host: find("http_host"),
        http_agent: find("http_agent"),
        http_referer: find("http_referer"),
        ssl_servername: find("ssl_servername"),
    };
    let same =
        |want: &[&str]| names.len() == want.len() && names.iter().zip(want).all(|(a, b)| a == b);
    let report = if same(SINKHOLE_HTTP) {
        Report::SinkholeHttp
    } else if same(SINKHOLE) {
        Report::Sinkhole
    } else {
        Report::Compatible {
            http: cols.http_url.is_some() || cols.http_host.is_some() || cols.http_agent.is_some(),
        }
    };
    Ok((cols, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor() -> SensorId {
        "shadowserver".parse().unwrap()
    }

    #[test]
    fn column_lists_match_the_published_schema() {
        let text =
            std::fs::read_to_string("../../../shared/reference/shadowserver/reports.json").unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (name, ours) in [
            ("event4_sinkhole_http", SINKHOLE_HTTP),
            ("event4_sinkhole", SINKHOLE),
        ] {
            let theirs: Vec<&str> = v[name]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(theirs, ours, "{name}");
        }
    }

    #[test]
    fn detects_reports_from_headers() {
        let http = SINKHOLE_HTTP.join(",");
        let r = ShadowserverReader::new(http.as_bytes(), sensor()).unwrap();
        assert_eq!(r.report(), Report::SinkholeHttp);
        let tcp = format!("\u{feff}{}", SINKHOLE.join(","));
        let r = ShadowserverReader::new(tcp.as_bytes(), sensor()).unwrap();
        assert_eq!(r.report(), Report::Sinkhole);
        let old = "timestamp,ip,port,asn,geo,src_ip,infection,http_agent";
        let r = ShadowserverReader::new(old.as_bytes(), sensor()).unwrap();
        assert_eq!(r.report(), Report::Compatible { http: true });
        let err = ShadowserverReader::new(&b"a,b,c\n1,2,3\n"[..], sensor()).unwrap_err();
        assert!(matches!(err, Error::Header { .. }), "{err}");
        assert!(ShadowserverReader::new(&b""[..], sensor()).is_err());
    }
}

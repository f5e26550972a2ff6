//! Column values as both stores write and read them: the event-kind code
//! and the checked conversions back from stored numbers and text.

use takedown_event::{Asn, EventKind};

use crate::Error;

/// The stored code of an event kind.
pub(crate) fn kind_code(k: EventKind) -> i16 {
    match k {
        EventKind::Http => 0,
        EventKind::Tcp => 1,
        EventKind::Dns => 2,
    }
}

/// The event kind of a stored code.
pub(crate) fn kind_from_code(c: i64) -> Result<EventKind, Error> {
    match c {
        0 => Ok(EventKind::Http),
        1 => Ok(EventKind::Tcp),
        2 => Ok(EventKind::Dns),
        _ => Err(Error::Corrupt(format!("event kind {c}"))),
    }
}

/// An optional stored text parsed as `T`; `what` names it in the error.
pub(crate) fn parse_opt<T: std::str::FromStr>(
    v: Option<String>,
    what: &str,
) -> Result<Option<T>, Error> {
    v.map(|s| {
        s.parse()
            .map_err(|_| Error::Corrupt(format!("{what} {s:?}")))
    })
    .transpose()
}

/// An optional stored AS number.
pub(crate) fn asn_from(v: Option<i64>) -> Result<Option<Asn>, Error> {
    v.map(|a| {
        u32::try_from(a)
            .map(Asn)
            .map_err(|_| Error::Corrupt(format!("AS number {a}")))
    })
    .transpose()
}

/// A stored port number.
pub(crate) fn port_from(v: i64) -> Result<u16, Error> {
    u16::try_from(v).map_err(|_| Error::Corrupt(format!("port {v}")))
}

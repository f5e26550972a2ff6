//! Newtypes for the values that travel with every event.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Error;

/// An autonomous system number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Asn(pub u32);

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Asn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let digits = t
            .strip_prefix("AS")
            .or_else(|| t.strip_prefix("as"))
            .unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Asn(s.to_owned()));
        }
        digits
            .parse()
            .map(Asn)
            .map_err(|_| Error::Asn(s.to_owned()))
    }
}

/// An ISO 3166-1 alpha-2 country code, stored upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code as two upper-case letters.
    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII letters, so this never fails.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => Err(Error::Country(s.to_owned())),
        }
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! name_newtype {
    ($(#[$doc:meta])* $name:ident, $err:ident, $valid:expr, $normalize:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                let n: String = ($normalize)(s.trim());
                let valid: fn(u8) -> bool = $valid;
                if n.is_empty() || n.len() > 64 || !n.bytes().all(valid) {
                    return Err(Error::$err(s.to_owned()));
                }
                Ok($name(n))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

name_newtype!(
    /// A botnet family name, lower-case, such as `rustock` or `kelihos`.
    Family,
    Family,
    |b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'),
    |s: &str| s.to_ascii_lowercase()
);

name_newtype!(
    /// The id of the sensor (sinkhole instance or import source) that saw an event.
    SensorId,
    Sensor,
    |b| b.is_ascii_graphic(),
    |s: &str| s.to_owned()
);

/// A UTC instant with microsecond resolution, stored as microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts from a `time` value, dropping sub-microsecond precision.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        // i128 nanoseconds fit any representable date; micros fit in i64.
        Timestamp((t.unix_timestamp_nanos() / 1000) as i64)
    }

    /// Converts to a `time` value in UTC.
    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// The UTC day this instant falls on, as days since the Unix epoch.
    pub fn day(self) -> i64 {
        self.0.div_euclid(86_400_000_000)
    }

    /// Shadowserver's timestamp form: `YYYY-MM-DD HH:MM:SS` in UTC, with `Z` omitted.
    pub fn to_shadowserver(self) -> String {
        let t = self.to_datetime();
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Accepts RFC 3339 (`2026-11-29T14:00:00Z`) and Shadowserver's
    /// `2026-11-29 14:00:00` (taken as UTC).
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        if let Ok(dt) = OffsetDateTime::parse(t, &Rfc3339) {
            return Ok(Self::from_datetime(dt));
        }
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        time::PrimitiveDateTime::parse(t, &fmt)
            .map(|p| Self::from_datetime(p.assume_utc()))
            .map_err(|_| Error::Timestamp(s.to_owned()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn_forms() {
        assert_eq!("64512".parse::<Asn>(), Ok(Asn(64512)));
        assert_eq!("AS4294967295".parse::<Asn>(), Ok(Asn(u32::MAX)));
        assert!("AS4294967296".parse::<Asn>().is_err());
        assert!("AS".parse::<Asn>().is_err());
        assert!("-1".parse::<Asn>().is_err());
    }

    #[test]
    fn country_rejects_non_letters() {
        assert!("D1".parse::<CountryCode>().is_err());
        assert!("DEU".parse::<CountryCode>().is_err());
        assert!("ü".parse::<CountryCode>().is_err());
    }

    #[test]
    fn family_is_normalised_and_bounded() {
        assert_eq!("Kelihos".parse::<Family>().unwrap().as_str(), "kelihos");
        assert!("with space".parse::<Family>().is_err());
        assert!("x".repeat(65).parse::<Family>().is_err());
        assert!("".parse::<Family>().is_err());
    }

    #[test]
    fn timestamps_round_trip_both_forms() {
        let a: Timestamp = "2026-11-29T14:00:01.5Z".parse().unwrap();
        let b: Timestamp = "2026-11-29 14:00:01.5".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_shadowserver(), "2026-11-29 14:00:01");
        assert_eq!(a.to_string().parse::<Timestamp>().unwrap(), a);
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn day_is_utc_and_floors_before_epoch() {
        assert_eq!(Timestamp(0).day(), 0);
        assert_eq!(Timestamp(-1).day(), -1);
        assert_eq!(Timestamp(86_400_000_000).day(), 1);
    }
}

//! Settings of the stream and of its consumers, as they appear in a config file,
//! and the connection and stream set-up they drive.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::Error;

/// Longest stream, subject prefix or consumer name accepted, in bytes.
const MAX_NAME: usize = 128;

/// Whether `c` may stand in a name or a subject token: `A-Z a-z 0-9 _ -`.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The name of a JetStream stream or durable consumer: 1 to 128 characters
/// from `A-Z a-z 0-9 _ -`, which are safe both in subjects and as file names
/// on the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty() && s.len() <= MAX_NAME && s.chars().all(plain);
        if ok {
            Ok(Name(s.to_owned()))
        } else {
            Err(Error::Config {
                field: "name",
                reason: format!(
                    "{:?} is not a valid stream or consumer name: use 1-{MAX_NAME} characters from A-Z, a-z, 0-9, '_' and '-'",
                    s.chars().take(MAX_NAME + 1).collect::<String>()
                ),
            })
        }
    }
}

impl TryFrom<String> for Name {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The subject prefix events are published under, such as `takedown.events`:
/// dot-separated tokens, each 1 or more characters from `A-Z a-z 0-9 _ -`, so
/// that it holds no wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject for events of `sensor`: `<prefix>.<sensor>`, with every
    /// character of the sensor id that has a meaning in subjects (`.`, `*`,
    /// `>`) or is outside `A-Z a-z 0-9 _ -` replaced by `_`. The subject only
    /// routes messages; the payload keeps the exact sensor id.
    pub fn subject(&self, sensor: &str) -> String {
        let mut s = String::with_capacity(self.0.len() + 1 + sensor.len());
        s.push_str(&self.0);
        s.push('.');
        s.extend(sensor.chars().map(|c| if plain(c) { c } else { '_' }));
        s
    }

    /// The filter that matches every subject under the prefix.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.0)
    }
}

impl FromStr for SubjectPrefix {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.split('.').all(|t| !t.is_empty() && t.chars().all(plain));
        if ok {
            Ok(SubjectPrefix(s.to_owned()))
        } else {
            Err(Error::Config {
                field: "subject_prefix",
                reason: format!(
                    "{:?} is not a valid subject prefix: use dot-separated tokens of A-Z, a-z, 0-9, '_' and '-', at most {MAX_NAME} characters, such as takedown.events",
                    s.chars().take(MAX_NAME + 1).collect::<String>()
                ),
            })
        }
    }
}

impl TryFrom<String> for SubjectPrefix {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<SubjectPrefix> for String {
    fn from(p: SubjectPrefix) -> String {
        p.0
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the stream lives and how it is kept: the `[stream]` table of a
/// sinkhole config. Every field has a default, so an empty table is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// NATS server URLs, such as `nats://10.0.0.5:4222`; the client fails
    /// over between them and reconnects on its own after an outage.
    pub servers: Vec<String>,
    /// The JetStream stream's name.
    pub stream: Name,
    /// Events are published to `<subject_prefix>.<sensor>`, and the stream
    /// captures `<subject_prefix>.>`.
    pub subject_prefix: SubjectPrefix,
    /// How long the stream keeps a message, in seconds (0: no age limit).
    /// Consumers that stay down longer than this lose the oldest events.
    pub max_age_secs: u64,
    /// Most bytes the stream keeps on disk (0: no limit of its own, the
    /// server's JetStream storage limit applies); beyond it the oldest
    /// messages are discarded. The server reserves a non-zero limit when the
    /// stream is created and refuses one larger than its free storage.
    pub max_bytes: u64,
    /// How long the server remembers message ids to drop re-published
    /// duplicates, in seconds (1 or more). It must outlast a publisher's
    /// retries of one batch, which the ingest pipeline bounds at a few seconds.
    pub duplicate_window_secs: u64,
    /// How long a publisher waits for the stream to acknowledge a batch before
    /// the commit fails and the pipeline retries it, in milliseconds (1 or more).
    pub publish_timeout_ms: u64,
    /// Most bytes in one message (1024 or more); bigger batches are split. The
    /// server's own `max_payload` (1 MiB by default) caps it further.
    pub max_message_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            servers: vec!["nats://127.0.0.1:4222".to_owned()],
            stream: Name("TAKEDOWN_EVENTS".to_owned()),
            subject_prefix: SubjectPrefix("takedown.events".to_owned()),
            max_age_secs: 7 * 86_400,
            // A fixed reservation would keep the stream from being created
            // on any server with less JetStream room than it, such as a
            // default nats-server on a small disk; the age limit bounds it.
            max_bytes: 0,
            duplicate_window_secs: 120,
            publish_timeout_ms: 10_000,
            max_message_bytes: 512 << 10,
        }
    }
}

impl StreamConfig {
    /// The defaults, with `servers` taken from a comma-separated URL list.
    pub fn with_servers(urls: &str) -> Self {
        StreamConfig {
            servers: split_urls(urls),
            ..StreamConfig::default()
        }
    }

    /// Checks the numeric settings, which serde cannot bound.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.servers.is_empty() || self.servers.iter().any(|s| s.trim().is_empty()) {
            return bad(
                "servers",
                "give at least one URL, such as nats://127.0.0.1:4222",
            );
        }
        if self.duplicate_window_secs == 0 {
            return bad("duplicate_window_secs", "must be at least 1");
        }
        if self.max_age_secs != 0 && self.max_age_secs < self.duplicate_window_secs {
            return bad(
                "max_age_secs",
                "must be 0 (no limit) or at least duplicate_window_secs",
            );
        }
        if i64::try_from(self.max_bytes).is_err() {
            return bad("max_bytes", "must fit in 63 bits");
        }
        if self.publish_timeout_ms == 0 {
            return bad("publish_timeout_ms", "must be at least 1");
        }
        if !(1024..=64 << 20).contains(&self.max_message_bytes) {
            return bad("max_message_bytes", "must be between 1024 and 67108864");
        }
        Ok(())
    }

    /// How long a publish may wait for its acknowledgement.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The JetStream stream definition: file storage, limits retention, old
    /// messages discarded first, one replica.
    pub fn jetstream_config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.stream.to_string(),
            subjects: vec![self.subject_prefix.wildcard()],
            storage: jetstream::stream::StorageType::File,
            retention: jetstream::stream::RetentionPolicy::Limits,
            discard: jetstream::stream::DiscardPolicy::Old,
            max_age: Duration::from_secs(self.max_age_secs),
            max_bytes: if self.max_bytes == 0 {
                -1
            } else {
                i64::try_from(self.max_bytes).unwrap_or(i64::MAX)
            },
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            num_replicas: 1,
            ..Default::default()
        }
    }

    /// Connects to the servers, failing at once when none answers, then
    /// reconnecting on its own after later outages.
    pub(crate) async fn connect(&self, name: &str) -> Result<async_nats::Client, Error> {
        self.check()?;
        let servers = self
            .servers
            .iter()
            .map(|s| s.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config {
                field: "servers",
                reason: format!("{e}; use URLs such as nats://127.0.0.1:4222"),
            })?;
        async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            // A short, capped back-off: an outage of the server should cost
            // seconds of latency once it is over, not the default's minutes.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(u64::try_from(attempts).unwrap_or(u64::MAX).min(20) * 100)
            })
            .connect(servers)
            .await
            .map_err(|e| Error::Connect {
                servers: self.servers.join(","),
                reason: e.to_string(),
            })
    }

    /// A JetStream context whose publishes time out after the publish timeout.
    pub(crate) fn context(&self, client: async_nats::Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(self.publish_timeout())
            .ack_timeout(self.publish_timeout())
            .build(client)
    }
}

/// Splits a comma-separated list of server URLs.
pub(crate) fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Creates the stream, or updates an existing one to `config`'s subjects and
/// limits. Publishers call this, since they decide what the stream keeps.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &StreamConfig,
) -> Result<jetstream::stream::Info, Error> {
    let info = js
        .create_or_update_stream(config.jetstream_config())
        .await
        .map_err(|e| Error::Stream {
            stream: config.stream.to_string(),
            reason: e.to_string(),
        })?;
    info!(stream = %config.stream, n_messages = info.state.messages, "Stream ready.");
    Ok(info)
}

/// Settings of a durable consumer that feeds a store from the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// The durable consumer's name. Ingest processes sharing a name share the
    /// work (each message goes to one of them); processes with different
    /// names each receive every message.
    pub durable: Name,
    /// How long the server waits for an acknowledgement before it redelivers
    /// a message, in seconds (1 or more). While a message waits on a slow
    /// store the consumer extends this with progress notices.
    pub ack_wait_secs: u64,
    /// Most messages delivered but not yet acknowledged (1 or more); this
    /// bounds the consumer's memory and the work redelivered after a crash.
    pub max_ack_pending: u32,
    /// Most messages asked for in one pull request (1 or more).
    pub fetch_batch: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            durable: Name("takedown-ingest".to_owned()),
            ack_wait_secs: 30,
            max_ack_pending: 1024,
            fetch_batch: 64,
        }
    }
}

impl ConsumerConfig {
    /// Checks the numeric settings, which serde cannot bound.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.ack_wait_secs == 0 || self.ack_wait_secs > 86_400 {
            return bad("ack_wait_secs", "must be between 1 and 86400");
        }
        if self.max_ack_pending == 0 {
            return bad("max_ack_pending", "must be at least 1");
        }
        if self.fetch_batch == 0 || self.fetch_batch > 10_000 {
            return bad("fetch_batch", "must be between 1 and 10000");
        }
        Ok(())
    }

    /// How long the server waits for an acknowledgement.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    pub(crate) fn jetstream_config(
        &self,
        prefix: &SubjectPrefix,
    ) -> jetstream::consumer::pull::Config {
        jetstream::consumer::pull::Config {
            durable_name: Some(self.durable.to_string()),
            description: Some("takedown ingest: events into a store".to_owned()),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait(),
            max_ack_pending: i64::from(self.max_ack_pending),
            filter_subject: prefix.wildcard(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes_are_checked() {
        assert!("TAKEDOWN_EVENTS".parse::<Name>().is_ok());
        assert!("a.b".parse::<Name>().is_err());
        assert!("".parse::<Name>().is_err());
        assert!("a b".parse::<Name>().is_err());
        assert!("takedown.events".parse::<SubjectPrefix>().is_ok());
        for bad in ["", "a..b", "a.*", "a.>", ".a", "a.", "a b"] {
            assert!(bad.parse::<SubjectPrefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sensor_subjects_hold_no_wildcards() {
        let p: SubjectPrefix = "takedown.events".parse().unwrap();
        assert_eq!(p.subject("sh1"), "takedown.events.sh1");
        assert_eq!(p.subject("eu.west>*"), "takedown.events.eu_west__");
        assert_eq!(p.wildcard(), "takedown.events.>");
    }

    #[test]
    fn config_file_round_trip_and_checks() {
        let c: StreamConfig = toml::from_str(
            "servers = [\"nats://a:4222\", \"nats://b:4222\"]\nstream = \"S1\"\nmax_bytes = 0\n",
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.stream.as_str(), "S1");
        assert_eq!(c.subject_prefix.as_str(), "takedown.events");
        c.check().unwrap();
        assert_eq!(c.jetstream_config().max_bytes, -1);
        assert!(toml::from_str::<StreamConfig>("stream = \"a.b\"").is_err());
        assert!(toml::from_str::<StreamConfig>("unknown = 1").is_err());
        let c = StreamConfig {
            max_message_bytes: 10,
            ..StreamConfig::default()
        };
        assert!(c.check().is_err());
        assert_eq!(
            StreamConfig::with_servers("nats://a:1, nats://b:2,").servers,
            ["nats://a:1", "nats://b:2"]
        );
        let c: ConsumerConfig = toml::from_str("durable = \"x\"\nack_wait_secs = 5").unwrap();
        c.check().unwrap();
        assert!(
            ConsumerConfig {
                fetch_batch: 0,
                ..c
            }
            .check()
            .is_err()
        );
    }
}

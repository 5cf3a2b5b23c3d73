//! `[kafka]`: the brokers, the topics and the bronze table each lands in, and the security
//! settings of a real cluster. Secrets are never stored here: the config names environment
//! variables, read when a client is built, and `Debug` never shows a value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What to do when a committed offset is older than the partition's first offset (retention
/// deleted messages that were never ingested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissingOffsets {
    /// Stop with an error naming the partition and how many messages are gone.
    #[default]
    Fail,
    /// Go on from the earliest offset and report the messages skipped.
    Earliest,
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One topic and where it lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub topic: String,
    /// The bronze table, `bronze.<topic with - as _>` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The record format of the values: a landing source's fields (`alpaca_quotes`, `trades`).
    pub format: String,
}

impl TopicConfig {
    pub fn new(topic: &str, format: &str) -> Self {
        Self {
            topic: topic.into(),
            table: None,
            format: format.into(),
        }
    }

    /// The bronze table this topic lands in.
    pub fn table(&self) -> String {
        self.table
            .clone()
            .unwrap_or_else(|| format!("bronze.{}", default_table_name(&self.topic)))
    }
}

/// A topic name as an Athena table name: lower-case, `-` and `.` become `_`.
pub fn default_table_name(topic: &str) -> String {
    topic
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]` (`run ingest-kafka --brokers` overrides it).
    pub brokers: String,
    pub topics: Vec<TopicConfig>,
    pub on_missing_offsets: OnMissingOffsets,
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` (with SASL protocols).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// The environment variable holding the SASL password (never the password itself).
    pub sasl_password_env: String,
    /// A PEM CA bundle for the brokers' TLS certificates; the system's roots when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ca_location: Option<String>,
    /// The client id brokers see (quotas, request logs).
    pub client_id: String,
    /// How long a request keeps retrying an unreachable broker before the run fails.
    pub timeout_secs: u64,
}

impl Default for KafkaConfig {
    /// Seed 001's topics: quotes on `coinbase-currencies`, simulated trades on
    /// `coinbase-trades`.
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            topics: vec![
                TopicConfig::new("coinbase-currencies", "alpaca_quotes"),
                TopicConfig::new("coinbase-trades", "trades"),
            ],
            on_missing_offsets: OnMissingOffsets::Fail,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password_env: "CRYPTOLAKE_KAFKA_SASL_PASSWORD".into(),
            ssl_ca_location: None,
            client_id: "cryptolake".into(),
            timeout_secs: 30,
        }
    }
}

/// Record formats a topic's values can have.
pub const TOPIC_FORMATS: [&str; 2] = ["alpaca_quotes", "trades"];

/// SASL mechanisms the client speaks.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// SASL settings with the password read from the environment. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"****")
            .finish()
    }
}

impl KafkaConfig {
    /// Checks the settings without contacting a broker.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.split(',').any(|b| {
            b.trim()
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(Error::Usage(format!(
                "kafka.brokers = {:?}: expected host:port[,host:port...]",
                self.brokers
            )));
        }
        let mut tables = BTreeMap::new();
        for t in &self.topics {
            if t.topic.is_empty() {
                return Err(Error::Usage("kafka.topics: a topic has no name".into()));
            }
            let defined = super::defined::lookup(&t.format)
                .is_some_and(|d| d.def.kind != super::defined::SourceKind::None);
            if !TOPIC_FORMATS.contains(&t.format.as_str()) && !defined {
                return Err(Error::Usage(format!(
                    "kafka topic {}: format {:?} is not one of {TOPIC_FORMATS:?} or a [[source]] \
                     with a kind",
                    t.topic, t.format
                )));
            }
            let table = t.table();
            if !table.starts_with("bronze.") || table.matches('.').count() != 1 {
                return Err(Error::Usage(format!(
                    "kafka topic {}: table {table:?} must be bronze.<name>",
                    t.topic
                )));
            }
            if cryptolake_catalog::layout::LANDING_SOURCES
                .iter()
                .chain(cryptolake_catalog::layout::REFERENCE_SOURCES.iter())
                .map(|s| s.to_string())
                .chain(cryptolake_catalog::layout::defined_sources())
                .any(|s| table == format!("bronze.{s}"))
            {
                return Err(Error::Usage(format!(
                    "kafka topic {}: {table} is ingest-files' table: give the topic another table",
                    t.topic
                )));
            }
            if let Some(other) = tables.insert(table.clone(), t.topic.clone()) {
                return Err(Error::Usage(format!(
                    "kafka topics {other} and {} both land in {table}",
                    t.topic
                )));
            }
        }
        if self.security_protocol.uses_sasl() && self.sasl_mechanism.is_none() {
            return Err(Error::Usage(format!(
                "kafka.security_protocol = {} needs kafka.sasl_mechanism",
                self.security_protocol.as_str().to_uppercase()
            )));
        }
        if let Some(m) = &self.sasl_mechanism
            && !SASL_MECHANISMS.contains(&m.as_str())
        {
            return Err(Error::Usage(format!(
                "kafka.sasl_mechanism = {m:?}: expected one of {SASL_MECHANISMS:?} \
                 (for MSK, use SCRAM: IAM and OAUTHBEARER are not supported)"
            )));
        }
        if self.security_protocol.uses_sasl() != self.sasl_username.is_some() {
            return Err(Error::Usage(
                "kafka.sasl_username is needed with a SASL security_protocol, and only then".into(),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(Error::Usage("kafka.timeout_secs must be positive".into()));
        }
        Ok(())
    }

    /// The brokers as a list.
    pub fn broker_list(&self) -> Vec<String> {
        self.brokers
            .split(',')
            .map(|b| b.trim().to_string())
            .collect()
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        matches!(
            self.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        )
    }

    /// The SASL settings, the password read from the environment now (never from the file).
    pub fn sasl(&self) -> Result<Option<SaslSettings>> {
        if !self.security_protocol.uses_sasl() {
            return Ok(None);
        }
        let (Some(mechanism), Some(username)) = (&self.sasl_mechanism, &self.sasl_username) else {
            return Err(Error::Usage(
                "kafka: SASL needs sasl_mechanism and sasl_username".into(),
            ));
        };
        let password = std::env::var(&self.sasl_password_env).map_err(|_| {
            Error::Usage(format!(
                "kafka.sasl_username is set but ${} (the SASL password) is not",
                self.sasl_password_env
            ))
        })?;
        Ok(Some(SaslSettings {
            mechanism: mechanism.clone(),
            username: username.clone(),
            password,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topics_land_in_their_bronze_tables() {
        let c = KafkaConfig::default();
        c.validate().unwrap();
        let tables: Vec<String> = c.topics.iter().map(TopicConfig::table).collect();
        assert_eq!(
            tables,
            ["bronze.coinbase_currencies", "bronze.coinbase_trades"]
        );
        assert_eq!(default_table_name("Market.Ticks-v2"), "market_ticks_v2");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |c: KafkaConfig| c.validate().unwrap_err().to_string();
        let base = KafkaConfig::default;
        assert!(
            err(KafkaConfig {
                brokers: "localhost".into(),
                ..base()
            })
            .contains("host:port")
        );
        let mut c = base();
        c.topics[1].table = Some("bronze.coinbase_currencies".into());
        assert!(err(c).contains("both land in bronze.coinbase_currencies"));
        let mut c = base();
        c.topics[0].topic = "trades".into();
        assert!(err(c).contains("bronze.trades is ingest-files' table"));
        let mut c = base();
        c.topics[0].format = "csv".into();
        assert!(err(c).contains("format \"csv\""));
        let c = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            ..base()
        };
        assert!(err(c).contains("SASL_SSL needs kafka.sasl_mechanism"));
        let c = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some("AWS_MSK_IAM".into()),
            sasl_username: Some("u".into()),
            ..base()
        };
        assert!(err(c).contains("IAM and OAUTHBEARER are not supported"));
    }

    #[test]
    fn the_sasl_password_comes_from_the_environment_and_is_never_shown() {
        let c = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("ingest".into()),
            sasl_password_env: "CRYPTOLAKE_TEST_KAFKA_PASSWORD_UNSET".into(),
            ..KafkaConfig::default()
        };
        c.validate().unwrap();
        let missing = c.sasl().unwrap_err().to_string();
        assert!(
            missing.contains("$CRYPTOLAKE_TEST_KAFKA_PASSWORD_UNSET"),
            "{missing}"
        );
        let c = KafkaConfig {
            sasl_password_env: "PATH".into(), // set in every test environment
            ..c
        };
        let sasl = c.sasl().unwrap().unwrap();
        assert_eq!(sasl.mechanism, "SCRAM-SHA-512");
        assert_eq!(sasl.password, std::env::var("PATH").unwrap());
        let shown = format!("{sasl:?} {c:?}");
        assert!(
            shown.contains("****") && !shown.contains(&sasl.password),
            "{shown}"
        );
    }
}

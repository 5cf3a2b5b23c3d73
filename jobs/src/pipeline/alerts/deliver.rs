//! Sends a recorded firing to its rule's channels: an SNS topic (the AWS SDK, with the default
//! credential chain and the topic's region; `AWS_ENDPOINT_URL_SNS` reaches an emulator) and a
//! webhook (an HTTP POST of the same JSON). Both carry the firing's `alert_id` as an
//! idempotency key: a message attribute and, on a FIFO topic, the deduplication id; the
//! `Idempotency-Key` header. The AWS SDK's types stay in this module.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::value::RawValue;

use super::rules::decimal_text;
use super::table::AlertRow;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The message every channel gets: the row's fields, prices and values as exact JSON numbers.
pub fn message(row: &AlertRow) -> String {
    #[derive(serde::Serialize)]
    struct Message<'a> {
        alert_id: &'a str,
        rule: &'a str,
        symbol: &'a str,
        source: &'a str,
        condition: &'a str,
        value: Box<RawValue>,
        price: Box<RawValue>,
        event_time: Option<String>,
        fired_at: Option<String>,
    }
    let time = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    };
    let number = |v: i128| {
        // Decimal text is a JSON number; RawValue keeps every digit (a Value would not).
        RawValue::from_string(decimal_text(v)).expect("a decimal is a JSON number")
    };
    let m = Message {
        alert_id: &row.alert_id,
        rule: &row.rule,
        symbol: &row.symbol,
        source: &row.source,
        condition: &row.condition,
        value: number(row.value),
        price: number(row.price),
        event_time: time(row.event_us),
        fired_at: time(row.fired_us),
    };
    serde_json::to_string(&m).expect("strings and numbers serialize")
}

/// The clients one run delivers with.
#[derive(Debug)]
pub struct Channels {
    http: reqwest::Client,
    sns: HashMap<String, aws_sdk_sns::Client>,
}

impl Channels {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            http,
            sns: HashMap::new(),
        })
    }

    /// POSTs the message; a status other than 2xx is a failure.
    pub async fn webhook(&self, url: &str, row: &AlertRow) -> Result<(), String> {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", &row.alert_id)
            .body(message(row))
            .send()
            .await
            .map_err(|e| format!("webhook {url}: {}", error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook {url}: HTTP {status}"))
        }
    }

    /// Publishes the message to the topic.
    pub async fn sns(&mut self, arn: &str, region: &str, row: &AlertRow) -> Result<(), String> {
        let client = self.sns_client(region).await;
        let key = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&row.alert_id)
            .build()
            .map_err(|e| format!("sns {arn}: {e}"))?;
        let mut publish = client
            .publish()
            .topic_arn(arn)
            .subject(format!("cryptolake alert {}: {}", row.rule, row.symbol))
            .message(message(row))
            .message_attributes("idempotency_key", key);
        if arn.ends_with(".fifo") {
            publish = publish
                .message_group_id(&row.symbol)
                .message_deduplication_id(&row.alert_id);
        }
        publish
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("sns {arn}: {}", error_chain(&e)))
    }

    async fn sns_client(&mut self, region: &str) -> aws_sdk_sns::Client {
        if let Some(c) = self.sns.get(region) {
            return c.clone();
        }
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(TIMEOUT)
            .build();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .timeout_config(timeouts)
            .load()
            .await;
        let client = aws_sdk_sns::Client::new(&config);
        self.sns.insert(region.to_string(), client.clone());
        client
    }
}

/// An error with its causes, as one line (the SDK's and reqwest's top-level text is terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_exact_decimals_and_the_key() {
        let row = AlertRow {
            alert_id: "00ff".into(),
            rule: "up".into(),
            symbol: "BTC-USD".into(),
            source: "coinbase_spot".into(),
            condition: "price > 43000".into(),
            value: 430_000_000_000_000_000_001,
            price: 430_001_234_500_000_000_000,
            event_us: 1_767_225_600_000_000,
            fired_us: 1_767_225_601_500_000,
            delivery_state: "pending".into(),
            sns_state: None,
            webhook_state: None,
            attempts: 0,
            last_error: None,
            delivered_us: None,
        };
        assert_eq!(
            message(&row),
            r#"{"alert_id":"00ff","rule":"up","symbol":"BTC-USD","source":"coinbase_spot","condition":"price > 43000","value":43000.0000000000000001,"price":43000.12345,"event_time":"2026-01-01T00:00:00Z","fired_at":"2026-01-01T00:00:01.500Z"}"#
        );
    }
}

//! Settings from configuration files and the environment (feature `serde`): a
//! [`ConnectionPoolConfig`] deserializes from the same field names as its builder, with
//! durations written as people write them (`"30s"`, `"500ms"`, `"10m"`, `"1h30m"`), and is
//! validated exactly as [`ConnectionPoolConfigBuilder::build`] validates it: an invalid value is
//! refused with the builder's error, which names the field.
//!
//! | field | written as |
//! |---|---|
//! | `name` | a string |
//! | `min_connections`, `max_connections`, `max_concurrent_creates`, `max_connections_ceiling` | a whole number |
//! | `acquire_timeout`, `create_timeout`, `check_timeout`, `destroy_timeout`, `max_lifetime_jitter`, `fairness_bound` | a duration |
//! | `idle_timeout`, `max_lifetime`, `health_check_interval`, `leak_detection_threshold` | a duration, or `"off"` |
//! | `checkout_validation` | `"never"`, `"always"`, or a duration (validate connections idle that long) |
//! | `create_backoff` | `{ initial = "10ms", max = "5s" }` |
//! | `maintenance` | `"thread"` or `"spawned"` |
//! | `detailed_statistics` | `true` or `false` |
//!
//! A field left out keeps its default; an unknown field is an error (a typo must not silently
//! leave a default in force).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::{CheckoutValidation, ConnectionPoolConfig, MaintenanceMode};

/// The fields as written; every one optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: Option<String>,
    min_connections: Option<usize>,
    max_connections: Option<usize>,
    acquire_timeout: Option<Human>,
    idle_timeout: Option<Limit>,
    max_lifetime: Option<Limit>,
    health_check_interval: Option<Limit>,
    checkout_validation: Option<Validation>,
    create_timeout: Option<Human>,
    check_timeout: Option<Human>,
    destroy_timeout: Option<Human>,
    fairness_bound: Option<Human>,
    max_concurrent_creates: Option<usize>,
    create_backoff: Option<Backoff>,
    max_lifetime_jitter: Option<Human>,
    leak_detection_threshold: Option<Limit>,
    max_connections_ceiling: Option<usize>,
    maintenance: Option<Mode>,
    detailed_statistics: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Backoff {
    initial: Human,
    max: Human,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Thread,
    Spawned,
}

/// Deserializes a [`ConnectionPoolConfig`] and validates it as the builder does.
///
/// # Errors
///
/// A value of the wrong kind, an unknown field, a duration without a unit, or a setting the
/// builder refuses (its [`ConfigError`](crate::ConfigError) text, naming the field).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::ConnectionPoolConfig;
///
/// let config: ConnectionPoolConfig = serde_json::from_str(
///     r#"{ "max_connections": 16, "acquire_timeout": "5s", "idle_timeout": "off" }"#,
/// )?;
/// assert_eq!(config.max_connections(), 16);
/// assert_eq!(config.acquire_timeout(), Duration::from_secs(5));
/// assert_eq!(config.idle_timeout(), None);
///
/// let refused = serde_json::from_str::<ConnectionPoolConfig>(r#"{ "max_connections": 0 }"#);
/// assert!(refused.unwrap_err().to_string().contains("max_connections"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ConnectionPoolConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let f = Fields::deserialize(deserializer)?;
        let mut b = ConnectionPoolConfig::builder();
        if let Some(v) = f.name {
            b = b.name(v);
        }
        if let Some(v) = f.min_connections {
            b = b.min_connections(v);
        }
        if let Some(v) = f.max_connections {
            b = b.max_connections(v);
        }
        if let Some(v) = f.acquire_timeout {
            b = b.acquire_timeout(v.0);
        }
        if let Some(v) = f.idle_timeout {
            b = b.idle_timeout(v.0);
        }
        if let Some(v) = f.max_lifetime {
            b = b.max_lifetime(v.0);
        }
        if let Some(v) = f.health_check_interval {
            b = b.health_check_interval(v.0);
        }
        if let Some(v) = f.checkout_validation {
            b = b.checkout_validation(v.0);
        }
        if let Some(v) = f.create_timeout {
            b = b.create_timeout(v.0);
        }
        if let Some(v) = f.check_timeout {
            b = b.check_timeout(v.0);
        }
        if let Some(v) = f.destroy_timeout {
            b = b.destroy_timeout(v.0);
        }
        if let Some(v) = f.fairness_bound {
            b = b.fairness_bound(v.0);
        }
        if let Some(v) = f.max_concurrent_creates {
            b = b.max_concurrent_creates(v);
        }
        if let Some(v) = f.create_backoff {
            b = b.create_backoff(v.initial.0, v.max.0);
        }
        if let Some(v) = f.max_lifetime_jitter {
            b = b.max_lifetime_jitter(v.0);
        }
        if let Some(v) = f.leak_detection_threshold {
            b = b.leak_detection_threshold(v.0);
        }
        if let Some(v) = f.max_connections_ceiling {
            b = b.max_connections_ceiling(v);
        }
        if let Some(v) = f.maintenance {
            b = b.maintenance(match v {
                Mode::Thread => MaintenanceMode::Thread,
                Mode::Spawned => MaintenanceMode::Spawned,
            });
        }
        if let Some(v) = f.detailed_statistics {
            b = b.detailed_statistics(v);
        }
        b.build().map_err(de::Error::custom)
    }
}

/// A duration written with its unit.
pub(crate) struct Human(pub(crate) Duration);

/// For `#[serde(deserialize_with)]` in `adapters::settings` (which exists with an adapter):
/// an optional duration written with its unit.
/// Its cfg names exactly the adapters whose settings use it (`redis-async` turns on `redis`).
#[cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "rusqlite",
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite",
    feature = "mysql-async"
))]
pub(crate) fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Human::deserialize(d).map(|h| Some(h.0))
}

/// For `#[serde(deserialize_with)]`: a duration, or `"off"` for none; absent means the default.
/// Its cfg names exactly the adapters whose settings use it.
#[cfg(any(feature = "redis", feature = "mysql"))]
pub(crate) fn limit_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    Limit::deserialize(d).map(|l| Some(l.0))
}

/// A duration, or `"off"`.
struct Limit(Option<Duration>);

/// `"never"`, `"always"`, or a duration.
struct Validation(CheckoutValidation);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Text("a duration with a unit, like \"30s\" or \"500ms\""))
            .and_then(|s| parse_duration(&s).map(Human).map_err(de::Error::custom))
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_str(Text("a duration like \"10m\", or \"off\""))?;
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Limit(None));
        }
        parse_duration(&s)
            .map(|d| Limit(Some(d)))
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Validation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_str(Text("\"never\", \"always\", or a duration like \"500ms\""))?;
        let v = match s.trim().to_ascii_lowercase().as_str() {
            "never" => CheckoutValidation::Never,
            "always" => CheckoutValidation::Always,
            other => CheckoutValidation::IdleFor(parse_duration(other).map_err(de::Error::custom)?),
        };
        Ok(Validation(v))
    }
}

/// A visitor that takes a string and says what it expected otherwise.
struct Text(&'static str);

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

/// Parses `"1h30m"`, `"500ms"`, `"2.5s"`: one or more numbers, each followed by a unit (`ns`,
/// `us`, `ms`, `s`, `m`, `h`, `d`). A bare number is refused: `30` could mean seconds or
/// milliseconds, and guessing wrong is a thousandfold mistake.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number needs a unit, like \"30s\" or \"500ms\""))?;
        if number_len == 0 {
            return Err(bad("expected a number"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86_400.0,
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        let value: f64 = number.parse().map_err(|_| bad("expected a number"))?;
        let part = Duration::try_from_secs_f64(value * seconds).map_err(|_| bad("out of range"))?;
        total = total.checked_add(part).ok_or_else(|| bad("out of range"))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 2.5s "), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("10 min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn durations_without_a_unit_or_with_a_wrong_one_are_refused() {
        for bad in ["30", "", "s", "5 parsecs", "1.2.3s", "-1s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{bad:?}: {err}");
        }
    }
}

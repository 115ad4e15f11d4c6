//! Durations and byte sizes as Kubernetes users write them: `30s`, `1h30m`, `1Mi`, `64Ki`.
//!
//! Durations follow Go's `time.ParseDuration` (what `metav1.Duration` accepts), restricted to
//! non-negative values. Sizes follow the integer forms of a Kubernetes quantity.

use std::time::Duration;

/// A duration or size string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The duration is not a sequence of `<number><unit>` pairs.
    #[error(
        "{0:?} is not a duration: write it like 500ms, 30s, 5m or 1h30m (units ns, us, ms, s, m, h)"
    )]
    Duration(String),
    /// The size is not an integer with an optional unit.
    #[error(
        "{0:?} is not a size: write bytes as an integer with an optional unit, like 65536, 64Ki or 1Mi (units Ki, Mi, Gi, k, M, G)"
    )]
    Size(String),
}

/// Parses a Go-style duration such as `1h30m`, `250ms` or `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let bad = || UnitError::Duration(text.to_owned());
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        let nanos = value * nanos_per_unit;
        if !nanos.is_finite() || nanos > 1e18 {
            return Err(bad());
        }
        // Truncation is intended: sub-nanosecond fractions do not exist in a Duration.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nanos = nanos as u64;
        total = total
            .checked_add(Duration::from_nanos(nanos))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

/// Parses a byte size such as `1048576`, `64Ki`, `1Mi` or `2M`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let bad = || UnitError::Size(text.to_owned());
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(multiplier).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "5 minutes", "-5s", "1d", "s", "1h-"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes_parse_like_quantities() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64Ki"), Ok(65536));
        assert_eq!(parse_size("1Mi"), Ok(1 << 20));
        assert_eq!(parse_size("2M"), Ok(2_000_000));
        for bad in ["", "Mi", "1.5Mi", "1MB", "-1", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_say_how_to_write_the_value() {
        let message = parse_duration("5 minutes").unwrap_err().to_string();
        assert!(
            message.contains("\"5 minutes\"") && message.contains("1h30m"),
            "{message}"
        );
    }
}

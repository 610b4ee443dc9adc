//! Duration values of the settings: a whole number means milliseconds (as the Go server's
//! `pullTimeout`), a string is either digits (milliseconds again) or a humantime duration such as
//! "10s", "2m" or "500ms". Zero is never a valid timeout.

use std::time::Duration;

/// Why a duration could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration must be greater than zero")]
    NotPositive,
    #[error("expected whole milliseconds or a duration with a unit such as \"10s\", \"2m\", \"500ms\"")]
    Unparsable,
}

/// Parses a duration given as text (command line or YAML string).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let millis = text.parse::<u64>().map_err(|_| DurationError::Unparsable)?;
        return from_millis(millis);
    }
    if text.starts_with('-') {
        return Err(DurationError::NotPositive);
    }
    let duration = humantime::parse_duration(text).map_err(|_| DurationError::Unparsable)?;
    if duration.is_zero() {
        return Err(DurationError::NotPositive);
    }
    Ok(duration)
}

/// A duration given as a whole number of milliseconds.
pub fn from_millis(millis: u64) -> Result<Duration, DurationError> {
    if millis == 0 {
        return Err(DurationError::NotPositive);
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_plain_milliseconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("60000"), Ok(Duration::from_secs(60)));
        assert_eq!(from_millis(1500), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_zero_negative_and_garbage() {
        assert_eq!(parse_duration("0"), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("0s"), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("-5s"), Err(DurationError::NotPositive));
        assert_eq!(from_millis(0), Err(DurationError::NotPositive));
        assert_eq!(parse_duration("ten seconds"), Err(DurationError::Unparsable));
        assert_eq!(parse_duration(""), Err(DurationError::Unparsable));
        assert_eq!(parse_duration("10 parsecs"), Err(DurationError::Unparsable));
    }
}

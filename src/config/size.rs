//! Byte sizes of the settings (`minFreeSpace`, later `maxCacheSize`): a whole number of bytes, or a number with a
//! unit: `k`, `M`, `G`, `T` (powers of 1000) or `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024), optionally followed by `B`,
//! as Kubernetes quantities are written (`500Mi`, `50Gi`).

/// Why a size could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("expected a number of bytes, optionally with a unit such as \"500Mi\", \"50Gi\" or \"1G\"")]
    Unparsable,
    #[error("the size is larger than this server can count")]
    TooLarge,
}

/// Parses a size given as text.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(SizeError::Unparsable),
    };
    if number.is_empty() || number.starts_with('.') || number.matches('.').count() > 1 {
        return Err(SizeError::Unparsable);
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(factor).ok_or(SizeError::TooLarge);
    }
    let value = number.parse::<f64>().map_err(|_| SizeError::Unparsable)? * factor as f64;
    if value >= u64::MAX as f64 {
        return Err(SizeError::TooLarge);
    }
    Ok(value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_bytes() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("500Mi", 500 << 20),
            ("50Gi", 50 << 30),
            ("1G", 1_000_000_000),
            ("1GB", 1_000_000_000),
            ("16k", 16_000),
            ("1.5Gi", 3 << 29),
            (" 2Ti ", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn garbage_and_overflow() {
        for text in ["", "Mi", "-1Mi", "1.2.3G", "5 parsecs", "1Xi", ".5G"] {
            assert_eq!(parse_size(text), Err(SizeError::Unparsable), "{text:?}");
        }
        assert_eq!(parse_size("99999999999Ti"), Err(SizeError::TooLarge));
    }
}

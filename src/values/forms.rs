//! The string forms a few config values take: byte sizes with units (`500Mi`, `50Gi`, `1G`), rates in bytes or
//! bits per second (`2MB`, `10Mbit`), and base URLs
//! (`endpoint`, `cluster.peers`): absolute http(s), a host, an optional port and path, no credentials, query or
//! fragment.

use std::net::Ipv6Addr;

/// Why a size could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("expected a number of bytes, optionally with a unit such as \"500Mi\", \"50Gi\" or \"1G\"")]
    Unparsable,
    #[error("the size is larger than this server can count")]
    TooLarge,
}

/// Parses a size given as text: a whole number of bytes, or a number with a unit: `k`, `M`, `G`, `T` (powers of
/// 1000) or `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024), optionally followed by `B`, as Kubernetes quantities are written.
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

/// Why a rate (`upstreamBandwidth`) could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error(
        "expected bytes per second (\"2MB\", \"500KiB\", a plain number) or bits per second (\"10Mbit\", \"10Mbps\"); \
         0 or empty for no cap"
    )]
    Unparsable,
    #[error("the rate is larger than this server can count")]
    TooLarge,
}

/// Parses a rate in bytes per second: a size as `parse_size` reads it (`2MB`, `500KiB`, `1000000`), or bits per
/// second with `bit` or `bps` after an optional `k`, `M`, `G` in either case (`10Mbit`, `10mbit`, `512kbps`; powers
/// of 1000, as `tc` counts). An optional `/s` follows either. A lone `b` (`10Mb`) is refused: bits or bytes?
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let text = text.trim();
    let text = text.strip_suffix("/s").unwrap_or(text);
    let bits = text.strip_suffix("bit").or_else(|| text.strip_suffix("bps"));
    let size = |text: &str| {
        parse_size(text).map_err(|e| match e {
            SizeError::Unparsable => RateError::Unparsable,
            SizeError::TooLarge => RateError::TooLarge,
        })
    };
    match bits {
        Some(number) if number.ends_with(['i', 'B']) => Err(RateError::Unparsable),
        Some(number) => Ok(size(&number.replace('m', "M").replace('g', "G"))?.div_ceil(8)),
        None => size(text),
    }
}

/// Validates an `endpoint` URL: absolute http(s), a host, an optional port and path, no
/// credentials, query or fragment. Returns it with a lower-case scheme and no trailing slash.
pub fn parse_endpoint(raw: &str) -> Result<String, &'static str> {
    let (scheme, rest) = raw.split_once("://").ok_or("expected an absolute URL such as http://127.0.0.1:5000")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the URL scheme must be http or https");
    }
    if raw.chars().any(char::is_whitespace) {
        return Err("a URL must not contain spaces");
    }
    if rest.contains(['?', '#']) {
        return Err("the URL must not have a query or fragment");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("credentials in the URL are not supported");
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("the URL has no host");
    }
    if !host.starts_with('[') && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err("the URL host has invalid characters");
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err("the URL port must be a number from 1 to 65535");
        }
    }
    Ok(format!("{scheme}://{authority}{}", path.trim_end_matches('/')))
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(after_bracket) = authority.strip_prefix('[') {
        let (v6, tail) = after_bracket.split_once(']').ok_or("the URL has an unclosed '[' in its host")?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err("the URL host is not a valid IPv6 address");
        }
        let host = &authority[..v6.len() + 2];
        return match tail {
            "" => Ok((host, None)),
            _ => match tail.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after the IPv6 host"),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
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

    #[test]
    fn rates_in_bytes_or_bits() {
        for (text, bytes) in [
            ("0", 0),
            ("2MB", 2_000_000),
            ("2MB/s", 2_000_000),
            ("500KiB", 500 << 10),
            ("1250000", 1_250_000),
            ("10Mbit", 1_250_000),
            ("10mbit", 1_250_000),
            ("10Mbps", 1_250_000),
            ("10Mbit/s", 1_250_000),
            ("512kbit", 64_000),
            ("1Gbit", 125_000_000),
            ("1.5Mbit", 187_500),
            ("12bit", 2),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text:?}");
        }
        for text in ["", "10Mb", "10mb", "fast", "-5Mbit", "10MBbit", "10Mibit", "bit", "10 parsecs/s"] {
            assert_eq!(parse_rate(text), Err(RateError::Unparsable), "{text:?}");
        }
        assert_eq!(parse_rate("99999999999Ti"), Err(RateError::TooLarge));
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(parse_endpoint("HTTPS://[::1]:8443/prefix/").as_deref(), Ok("https://[::1]:8443/prefix"));
        assert!(parse_endpoint("127.0.0.1:5000").is_err());
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("http://").is_err());
        assert!(parse_endpoint("http://h/?q=1").is_err());
        assert!(parse_endpoint("http://h/#f").is_err());
        assert!(parse_endpoint("http://u:p@h").is_err());
        assert!(parse_endpoint("http://h:0").is_err());
        assert!(parse_endpoint("http://h:99999").is_err());
        assert!(parse_endpoint("http://[zz]:1").is_err());
    }
}

//! A secret string (an upstream password): its `Debug` and `Display` print `***`, so that a secret can sit in
//! `Settings`, which is logged and formatted, without ever reaching a log line, an error or the banner. Only
//! `expose` gives the text, to the code that builds the `Authorization` header.

use std::fmt;

/// A string that never formats as itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret text. Never log or format it.
    // Read by the upstream client when it builds the `Authorization` header.
    #[allow(dead_code)]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hide_the_text() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret:#?} {secret:>10}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret, Secret::new("hunter2"));
    }
}

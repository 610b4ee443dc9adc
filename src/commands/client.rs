//! The commands' client of a running server's admin API: the server holds the cache directory's lock, so `load`,
//! `list` and `prune` ask it to do the work. It reads the admin port and token file from the same config the server
//! runs with, and talks to the admin listener on the loopback address when `host` is a wildcard.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::config::Settings;

/// A running server's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    client: awc::Client,
}

/// The admin API of the server that holds `settings.mirror.image_path`, or why it cannot be reached.
pub fn connect(settings: &Settings) -> Result<AdminClient, String> {
    let Some(admin) = &settings.admin else {
        return Err(format!(
            "the cache directory {} is in use by a running server, and the config ({}) has no admin section to reach \
             it through: add `admin: {{port, tokenFile}}` (docs/configuration.md), or stop the server",
            settings.mirror.image_path.display(),
            settings.config_source
        ));
    };
    let token = admin.token.expose().to_string();
    let host = match settings.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    let client = awc::Client::builder().timeout(Duration::from_secs(24 * 3600)).disable_redirects().finish();
    Ok(AdminClient { base: format!("http://{host}:{}", admin.port), token, client })
}

impl AdminClient {
    fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        self.client
            .request(method, format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {}", self.token)))
    }

    /// GET a JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let mut resp = self.request(awc::http::Method::GET, path).send().await.map_err(|e| self.failed(e))?;
        let body = resp.body().limit(256 << 20).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the admin API answered {}: {}", resp.status(), String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the admin API's answer: {e}"))
    }

    /// POST with no body; a JSON answer.
    pub async fn post_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let mut resp = self.request(awc::http::Method::POST, path).send().await.map_err(|e| self.failed(e))?;
        let body = resp.body().limit(256 << 20).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the admin API answered {}: {}", resp.status(), String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the admin API's answer: {e}"))
    }

    /// POST a file as the body and hand each line of the (streamed) answer to `line`.
    pub async fn post_file_lines(&self, path: &str, file: &Path, mut line: impl FnMut(&str)) -> Result<(), String> {
        let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let body = futures_util::stream::unfold(Some(f), |f| async move {
            let mut f = f?;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut buf = vec![0; 1 << 20];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((buf, f))
            })
            .await;
            match read {
                Ok(Ok((buf, _))) if buf.is_empty() => None,
                Ok(Ok((buf, f))) => Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(f))),
                Ok(Err(e)) => Some((Err(e), None)),
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        });
        let mut resp = self
            .request(awc::http::Method::POST, path)
            .send_stream(Box::pin(body))
            .await
            .map_err(|e| self.failed(e))?;
        if !resp.status().is_success() {
            let body = resp.body().limit(1 << 20).await.unwrap_or_default();
            return Err(format!("the admin API answered {}: {}", resp.status(), String::from_utf8_lossy(&body)));
        }
        let mut pending = Vec::new();
        while let Some(chunk) = resp.next().await {
            pending.extend_from_slice(&chunk.map_err(|e| format!("the admin API's answer broke off: {e}"))?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let text: Vec<u8> = pending.drain(..=end).collect();
                line(String::from_utf8_lossy(&text).trim());
            }
        }
        Ok(())
    }

    fn failed(&self, e: impl std::fmt::Display) -> String {
        format!("cannot reach the running server's admin API at {}: {e}", self.base)
    }
}

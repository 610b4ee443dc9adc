//! Files the configuration names: opened without blocking and only when they are regular files (a FIFO named as a
//! token or certificate file would otherwise hang the start), and the admin token file, read here only (by the
//! config's validation). Imports nothing of the config.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` for reading if it is a regular file. `O_NONBLOCK` makes opening a FIFO return at once instead of
/// waiting for a writer; the file type is then checked on the open file, so what is checked is what is read.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is a directory"));
    }
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is not a regular file (a FIFO, socket or device)"));
    }
    Ok(file)
}

/// The text of an I/O error without its "(os error N)" suffix.
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// A token file larger than this is refused: it is not a token file (a certificate, a log, `/dev/zero`).
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The token in `file`: a readable regular file (never a FIFO, which would block) of at most
/// `MAX_TOKEN_FILE_BYTES` holding one token (surrounding white space, such as the newline `openssl rand -hex 32 >
/// FILE` writes, does not count). The error says what is wrong, never what the file holds.
pub fn read_token(file: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = open_regular(file).and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes));
    read.map_err(|err| format!("cannot read the admin token file: {}", io_reason(&err)))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "the admin token file is larger than {MAX_TOKEN_FILE_BYTES} bytes; it must hold only the token"
        ));
    }
    match std::str::from_utf8(&bytes).map(str::trim) {
        Err(_) => Err("the admin token file is not text".to_string()),
        Ok("") => Err("the admin token file is empty".to_string()),
        Ok(token) if token.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err("the admin token file must hold one token: a single word, no spaces or line breaks".to_string())
        }
        Ok(token) => Ok(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "x").expect("write");
        assert!(open_regular(&file).is_ok());
        let err = open_regular(dir.path()).expect_err("a directory");
        assert_eq!(io_reason(&err), "it is a directory");
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).expect("mkfifo");
        // Without O_NONBLOCK this open would wait for a writer for ever.
        let err = open_regular(&fifo).expect_err("a FIFO");
        assert_eq!(io_reason(&err), "it is not a regular file (a FIFO, socket or device)");
        let err = open_regular(&dir.path().join("nope")).expect_err("missing");
        assert_eq!(io_reason(&err), "No such file or directory");
    }
}

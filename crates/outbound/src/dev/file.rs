//! The `file` transport: each message becomes a `.eml` file in a directory. For development,
//! for apps that have not configured mail yet, and for inspecting exactly what would be sent.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::message::{PreparedMessage, RenderedMessage};
use crate::{Error, ErrorKind, Receipt, Transport};

/// Writes each message as `<dir>/<date>-<id>.eml`.
///
/// Files appear atomically: the message is written to a temporary file in the same directory,
/// flushed to disk, then linked into place under its final name, so a reader (a watcher, a
/// test) never sees a partial file, and an existing file is never overwritten.
///
/// ```
/// use outbound::{Message, Transport, dev::FileTransport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let dir = std::env::temp_dir().join("outbound-doc-outbox");
/// let transport = FileTransport::new(&dir);
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let receipt = transport.send(&msg).await?;
/// let path = receipt.provider_id.unwrap();
/// assert!(path.ends_with(".eml"));
/// # std::fs::remove_file(path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    /// A transport writing into `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileTransport { dir: dir.into() }
    }

    /// The directory messages are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> Error {
    let kind = match err.kind() {
        // A path that cannot exist or be written is the operator's to fix, not a retry's.
        std::io::ErrorKind::PermissionDenied
        | std::io::ErrorKind::NotADirectory
        | std::io::ErrorKind::NotFound
        | std::io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Config,
        _ => ErrorKind::Transient,
    };
    Error::new(kind, format!("{what} {}: {err}", path.display())).with_source(err)
}

/// A file name from the Message-ID: only characters safe on every file system.
fn file_stem(message_id: &str, date: std::time::SystemTime) -> String {
    let secs = date
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let id: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    format!("{secs}-{id}")
}

fn write_atomically(dir: &Path, stem: &str, message: &RenderedMessage) -> Result<PathBuf, Error> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create directory", dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".outbound-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io_error("cannot create a file in", dir, e))?;
    // A chunk at a time: a large attachment is encoded as it is written, never held whole.
    let mut out = std::io::BufWriter::new(tmp.as_file_mut());
    message
        .write_to(&mut out)
        .and_then(|_| out.flush())
        .map_err(|e| io_error("cannot write into", dir, e))?;
    drop(out);
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_error("cannot write into", dir, e))?;
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            format!("{stem}.eml")
        } else {
            format!("{stem}-{n}.eml")
        };
        let path = dir.join(name);
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                tmp = e.file;
                n += 1;
            }
            Err(e) => return Err(io_error("cannot create", &path, e.error)),
        }
    }
}

#[async_trait]
impl Transport for FileTransport {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let message_id = message.message_id();
        message.rendered()?;
        let stem = file_stem(message_id, message.message().date());
        let dir = self.dir.clone();
        let owned = message.clone();
        let path = tokio::task::spawn_blocking(move || {
            // Rendered above, so this cannot fail; the blocking thread borrows the bytes.
            let rendered = owned.rendered()?;
            write_atomically(&dir, &stem, rendered)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Transient, format!("file writer stopped: {e}")))??;
        tracing::info!(path = %path.display(), %message_id, "message written");
        Ok(
            Receipt::new("file", message_id, message.envelope().to.clone())
                .with_provider_id(path.display().to_string()),
        )
    }

    async fn verify(&self) -> Result<(), Error> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_error("cannot create directory", &dir, e))?;
            tempfile::tempfile_in(&dir)
                .map(drop)
                .map_err(|e| io_error("cannot write into", &dir, e))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Transient, format!("file check stopped: {e}")))?
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

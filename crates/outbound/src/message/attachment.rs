//! Files carried by a message: ordinary attachments and inline parts referenced by Content-ID.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::MessageError;

/// A file attached to a message, or an inline part (e.g. an image the HTML shows with
/// `<img src="cid:logo">`).
///
/// ```
/// use outbound::Attachment;
/// let report = Attachment::from_bytes("report.csv", b"a,b\n1,2\n".to_vec());
/// assert_eq!(report.content_type(), "text/csv");
/// let logo = Attachment::from_bytes("logo.png", vec![0x89, b'P', b'N', b'G']).inline("logo");
/// assert_eq!(logo.content_id(), Some("logo"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    filename: String,
    content_type: String,
    content: Arc<[u8]>,
    content_id: Option<String>,
}

impl Attachment {
    /// An attachment from bytes; the content type is guessed from the file name's extension
    /// (`application/octet-stream` when unknown).
    pub fn from_bytes(filename: impl Into<String>, content: impl Into<Arc<[u8]>>) -> Self {
        let filename = filename.into();
        let content_type = mime_guess::from_path(&filename)
            .first_or_octet_stream()
            .essence_str()
            .to_string();
        Attachment {
            filename,
            content_type,
            content: content.into(),
            content_id: None,
        }
    }

    /// Reads a file; the attachment is named after the file.
    ///
    /// ```no_run
    /// use outbound::Attachment;
    /// let a = Attachment::from_path("invoice.pdf")?;
    /// assert_eq!(a.content_type(), "application/pdf");
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, MessageError> {
        let path = path.as_ref();
        let content = std::fs::read(path).map_err(|source| MessageError::AttachmentUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Attachment::named_after(path, content))
    }

    /// Content read elsewhere (within a size limit, say), named and typed after the file it
    /// came from, as [`from_path`](Self::from_path) names it.
    ///
    /// ```
    /// use outbound::Attachment;
    /// let a = Attachment::named_after("reports/q3.csv", b"a,b\n".to_vec());
    /// assert_eq!((a.filename(), a.content_type()), ("q3.csv", "text/csv"));
    /// ```
    pub fn named_after(path: impl AsRef<Path>, content: impl Into<Arc<[u8]>>) -> Self {
        let filename = path
            .as_ref()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".to_string());
        Attachment::from_bytes(filename, content)
    }

    /// The content, shared (no copy): rendering keeps it as it is and encodes it as it is sent.
    pub(crate) fn shared_content(&self) -> Arc<[u8]> {
        self.content.clone()
    }

    /// Overrides the guessed content type (e.g. `image/svg+xml`).
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Makes this an inline part with the given Content-ID (without angle brackets), for HTML
    /// that references `cid:<content_id>`.
    pub fn inline(mut self, content_id: impl Into<String>) -> Self {
        self.content_id = Some(content_id.into());
        self
    }

    /// The file name shown to the recipient.
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The MIME type, e.g. `application/pdf`.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The bytes.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The Content-ID of an inline part.
    pub fn content_id(&self) -> Option<&str> {
        self.content_id.as_deref()
    }

    /// Whether this is an inline part.
    pub fn is_inline(&self) -> bool {
        self.content_id.is_some()
    }

    pub(crate) fn validate(&self) -> Result<(), MessageError> {
        let fail = |reason: &str| MessageError::InvalidAttachment {
            filename: self.filename.clone(),
            reason: reason.to_string(),
        };
        if self.filename.contains(['\r', '\n']) {
            return Err(fail("the file name contains a line break"));
        }
        if self
            .filename
            .chars()
            .any(|c| c.is_control() || c == '\u{7f}')
        {
            return Err(fail(
                "the file name contains a control character (NUL, escape...)",
            ));
        }
        if self.filename.trim().is_empty() {
            return Err(fail("the file name is empty"));
        }
        let valid_type = self
            .content_type
            .split_once('/')
            .is_some_and(|(t, s)| is_token(t) && is_token(s));
        if !valid_type {
            return Err(fail(
                "the content type is not `type/subtype` (e.g. `application/pdf`)",
            ));
        }
        if let Some(cid) = &self.content_id {
            if cid.is_empty()
                || !cid
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>\"()[]\\,;:".contains(&b))
            {
                return Err(fail(
                    "the Content-ID must be printable ASCII without spaces, `<`, `>` or quotes \
                     (e.g. `logo` or `logo@example.com`)",
                ));
            }
        }
        Ok(())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.content.len())
            .field("content_id", &self.content_id)
            .finish()
    }
}

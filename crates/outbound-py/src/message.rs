//! A message handed over from Python, built by the library's `Message` builder.
//!
//! Everything is copied out of Python objects while the GIL is held; building and sending
//! then run without it.

use outbound::{Attachment, Message};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

/// One attachment: a path to read, or a file name with its bytes and optional content type.
#[derive(FromPyObject)]
pub(crate) enum AttachmentSpec {
    /// `(filename, content, content_type)`; content type `None` guesses from the name.
    Bytes(String, PyBackedBytes, Option<String>),
    /// A file to read.
    Path(std::path::PathBuf),
}

/// The fields of a message, as Python gave them.
pub(crate) struct MessageSpec {
    pub to: Vec<String>,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub from: Option<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<AttachmentSpec>,
}

impl MessageSpec {
    /// The library's message; validation errors are `InvalidMessage` errors.
    pub fn build(self) -> Result<Message, outbound::Error> {
        let mut b = Message::builder().subject(self.subject);
        if let Some(from) = self.from {
            b = b.from(from);
        }
        for to in self.to {
            b = b.to(to);
        }
        for cc in self.cc {
            b = b.cc(cc);
        }
        for bcc in self.bcc {
            b = b.bcc(bcc);
        }
        for r in self.reply_to {
            b = b.reply_to(r);
        }
        if let Some(html) = self.html {
            b = b.html(html);
        }
        if let Some(text) = self.text {
            b = b.text(text);
        }
        for (name, value) in self.headers {
            b = b.header(name, value);
        }
        for a in self.attachments {
            b = match a {
                AttachmentSpec::Path(path) => b.attach_path(path),
                AttachmentSpec::Bytes(name, content, content_type) => {
                    let att = Attachment::from_bytes(name, std::sync::Arc::<[u8]>::from(&*content));
                    b.attach(match content_type {
                        Some(ct) => att.with_content_type(ct),
                        None => att,
                    })
                }
            };
        }
        Ok(b.build()?)
    }
}

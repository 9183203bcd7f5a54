//! Transports for development and tests: [`FileTransport`] writes each message as a `.eml`
//! file (also the command line's fallback when nothing is configured), [`MemoryTransport`]
//! keeps messages in memory for assertions.

mod file;
mod memory;

pub use file::FileTransport;
pub use memory::{MemoryTransport, SentMessage};

//! The `memory` kind, for tests: only the default sender.

use std::sync::Arc;

use super::settings::Settings;
use crate::dev::MemoryTransport;
use crate::{Error, Transport};

pub(super) fn build_memory(_: &Settings) -> Result<Arc<dyn Transport>, Error> {
    Ok(Arc::new(MemoryTransport::new()))
}

//! The `memory` kind, for tests: only the default sender.

use std::sync::Arc;

use super::registry::{Key, DEFAULT_FROM, RATE, RETRIES};
use super::registry::{LIMITS, LIMITS_FAIL};
use super::Settings;
use crate::dev::MemoryTransport;
use crate::{Error, Transport};

pub(super) const MEMORY_KEYS: &[Key] = &[DEFAULT_FROM, RETRIES, RATE, LIMITS, LIMITS_FAIL];

pub(super) fn build_memory(_: &Settings) -> Result<Arc<dyn Transport>, Error> {
    Ok(Arc::new(MemoryTransport::new()))
}

//! Helpers shared by integration tests that declare `mod support;`.

pub mod scripted_smtpd;

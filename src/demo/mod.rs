//! `cf-zero-downtime demo`: the whole flow on the embedded simulator, under load, with a report.
//!
//! Depends on: sim, deploy, ui.

pub mod load;

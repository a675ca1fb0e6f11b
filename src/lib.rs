pub mod api;
pub mod config;
pub mod crypto;
pub mod error;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vault;

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod dto;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod nats;
pub mod scan;
pub mod schema;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vault;
pub mod webhook;

#[cfg(test)]
mod module_graph;

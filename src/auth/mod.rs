//! Who is calling (service identity), and what they may do (policies).

pub mod identity;
pub mod limiter;
pub mod policy;
pub mod settings;

pub use policy::{project_resource, secret_resource, Action};
pub use settings::AuthSettings;

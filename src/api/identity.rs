//! The `Caller` extractor: a handler that takes one cannot run unauthenticated.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::{request_meta, AppState};
use crate::dto::{SERVICE_HEADER, TOKEN_HEADER};
use crate::error::ApiError;
use crate::vault::RequestMeta;

/// An authenticated service and where its request came from.
pub struct Caller(pub RequestMeta);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::internal(&"application state missing"))?;
            let mut meta = request_meta(&req, &state.proxies);
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            state
                .vault
                .authenticate(&mut meta, header(SERVICE_HEADER), header(TOKEN_HEADER))
                .await?;
            Ok(Caller(meta))
        })
    }
}

//! Extractors whose rejections are [`ApiError`]s, so that a bad path parameter, query
//! string or JSON body is answered with a problem document like every other error.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tributary_core::json::{self, StrictError};
use tributary_core::parse::ParseError;

use crate::error::ApiError;

/// [`axum::extract::Path`], rejecting with [`ApiError::Path`] (400).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(ApiError::Path)
    }
}

/// [`axum::extract::Query`], rejecting with [`ApiError::Query`] (400).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(ApiError::Query)
    }
}

/// A JSON body, rejected with [`ApiError::Json`]; one holding a key twice in an object is
/// refused as the ingestion edge refuses it (a 400 naming the key, see
/// [`tributary_core::json`]), where serde would keep the last of the two.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| ApiError::Json(JsonRejection::from(rejection)))?;
        // Only a JSON body is checked here: another is Json's 415.
        let json_body = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let checked = json_body.then(|| json::from_slice(&bytes));
        if let Some(Err(StrictError::DuplicateKey { key, line, column })) = checked {
            return Err(ApiError::Events(ParseError::DuplicateKey {
                key,
                line,
                column,
            }));
        }
        let request = Request::from_parts(parts, Body::from(bytes));
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(ApiError::Json)
    }
}

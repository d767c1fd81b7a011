//! `/v1/keys`: issuing, listing and revoking API keys (admin scope, checked by the auth
//! middleware).
//!
//! Contract:
//! - `POST /v1/keys` with `{"scopes": [...], "expires_at"?, "description"?}` (unknown
//!   fields refused) mints a key in the caller's tenant and answers 201 with the whole key
//!   (`key`), shown this once, and a `Location`. At least one scope; `expires_at` in the
//!   future and a valid time; a description of at most [`MAX_DESCRIPTION`] characters.
//! - `GET /v1/keys` lists the caller's tenant's keys, newest first, revoked ones included,
//!   without secrets or hashes.
//! - `DELETE /v1/keys/{id}` revokes a key of the caller's tenant (204, also when it was
//!   revoked already); an unknown id, or another tenant's, is a 404. The key stops passing
//!   on this node at once, on others within the key cache's TTL.

use std::collections::BTreeSet;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tributary_core::Timestamp;
use tributary_core::ports::{Scope, StoredKey};

use crate::AppState;
use crate::auth::{IssuedKeys, NewKey, Principal};
use crate::error::ApiError;
use crate::extract::ApiPath;

/// The longest description, in characters.
pub(crate) const MAX_DESCRIPTION: usize = 200;

/// A JSON body, rejected with [`ApiError::Json`].
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(ApiError::Json)
    }
}

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// What the key may do.
    scopes: BTreeSet<Scope>,
    /// When it stops being accepted.
    #[serde(default)]
    expires_at: Option<Timestamp>,
    /// For people.
    #[serde(default)]
    description: Option<String>,
}

/// A key as listed: everything but its secret and hash.
#[derive(Debug, Serialize)]
struct KeyView<'a> {
    id: &'a str,
    scopes: &'a BTreeSet<Scope>,
    tenant: &'a str,
    description: Option<&'a str>,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    active: bool,
}

impl<'a> KeyView<'a> {
    fn of(key: &'a StoredKey, now: Timestamp) -> Self {
        Self {
            id: &key.id,
            scopes: &key.scopes,
            tenant: &key.tenant,
            description: key.description.as_deref(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            active: key.is_active(now),
        }
    }
}

/// The issued keys of `state`, or a 501 when the node has no key store.
fn issued(state: &AppState) -> Result<&IssuedKeys, ApiError> {
    state.auth.issued().ok_or(ApiError::NoKeyStore)
}

/// Checks what `POST /v1/keys` asks for.
fn checked(body: CreateKey, now: Timestamp) -> Result<CreateKey, ApiError> {
    let invalid = |name, reason: &str| ApiError::InvalidParameter {
        name,
        reason: reason.to_owned(),
    };
    if body.scopes.is_empty() {
        return Err(invalid(
            "scopes",
            "must name at least one of ingest, read, admin",
        ));
    }
    if let Some(at) = body.expires_at {
        if !at.is_valid() {
            return Err(invalid("expires_at", "is not a valid time"));
        }
        if at <= now {
            return Err(invalid("expires_at", "must be in the future"));
        }
    }
    let description = body
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(invalid("description", "must be at most 200 characters"));
    }
    Ok(CreateKey {
        description,
        ..body
    })
}

/// `POST /v1/keys`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let issued = issued(&state)?;
    let now = Timestamp::now();
    let body = checked(body, now)?;
    let minted = NewKey::generate();
    let stored = StoredKey {
        id: minted.id.clone(),
        secret_hash: minted.secret_hash,
        scopes: body.scopes,
        tenant: principal.tenant.clone(),
        description: body.description,
        created_at: now,
        expires_at: body.expires_at,
        revoked_at: None,
    };
    issued.store().create(&stored).await?;
    tracing::info!(key_id = %stored.id, by = %principal.id, scopes = ?stored.scopes, "API key created");
    let mut view = serde_json::to_value(KeyView::of(&stored, now)).map_err(ApiError::Encode)?;
    if let Value::Object(members) = &mut view {
        members.insert("key".into(), json!(minted.key));
    }
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/keys/{}", stored.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    // The key is shown once: no cache may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /v1/keys`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let keys = issued(&state)?.store().list(&principal.tenant).await?;
    let now = Timestamp::now();
    let views: Vec<KeyView<'_>> = keys.iter().map(|k| KeyView::of(k, now)).collect();
    Ok(Json(json!({ "keys": views })))
}

/// `DELETE /v1/keys/{id}`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let issued = issued(&state)?;
    let unknown = || ApiError::UnknownKey { id: id.clone() };
    let stored = issued.store().get(&id).await?.ok_or_else(unknown)?;
    if stored.tenant != principal.tenant || !issued.revoke(&id).await? {
        return Err(unknown());
    }
    tracing::info!(key_id = %id, by = %principal.id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: Value) -> Result<CreateKey, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn bodies_are_checked() {
        let now = Timestamp::from_millis(1_000);
        assert!(body(json!({"scopes": ["read"], "colour": 1})).is_err());
        assert!(body(json!({"scopes": ["write"]})).is_err());
        assert!(body(json!({})).is_err());
        let ok = checked(
            body(json!({"scopes": ["read"], "description": "  "})).unwrap(),
            now,
        )
        .unwrap();
        assert_eq!(ok.description, None);
        for bad in [
            json!({"scopes": []}),
            json!({"scopes": ["read"], "expires_at": 1_000}),
            json!({"scopes": ["read"], "description": "x".repeat(201)}),
        ] {
            assert!(checked(body(bad.clone()).unwrap(), now).is_err(), "{bad}");
        }
    }
}

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

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tributary_core::Timestamp;
use tributary_core::ports::{Scope, StoredKey};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{IssuedKeys, NewKey, Principal};
use crate::error::{ApiError, ProblemDetails};
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::{BadRequest, BodyErrors, NoKeyStore, Unavailable, V1Errors, schemas};

/// The longest description, in characters.
pub(crate) const MAX_DESCRIPTION: usize = 200;

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyRequest)]
pub(crate) struct CreateKey {
    /// What the key may do.
    #[schema(value_type = BTreeSet<schemas::Scope>, min_items = 1)]
    scopes: BTreeSet<Scope>,
    /// When it stops being accepted.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Timestamp>)]
    expires_at: Option<Timestamp>,
    /// For people.
    #[serde(default)]
    #[schema(max_length = 200)]
    description: Option<String>,
}

/// An API key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub(crate) struct KeyView<'a> {
    /// The key's public id.
    id: &'a str,
    #[schema(value_type = BTreeSet<schemas::Scope>)]
    scopes: &'a BTreeSet<Scope>,
    /// The tenant it belongs to.
    tenant: &'a str,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(value_type = schemas::Timestamp)]
    created_at: Timestamp,
    #[schema(value_type = Option<schemas::Timestamp>, required = true)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<schemas::Timestamp>, required = true)]
    revoked_at: Option<Timestamp>,
    /// Neither revoked nor expired.
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

/// An API key just issued, with its secret (`key`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    /// The key to send as `Authorization: Bearer <key>`: `trb_<id>_<secret>`. Shown once.
    key: String,
}

/// The answer of `GET /v1/keys`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList<'a> {
    keys: Vec<KeyView<'a>>,
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
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "createKey",
    summary = "Issues an API key (admin scope); the key is shown in this answer only.",
    description = "Mints a key `trb_<id>_<secret>` (32 random bytes of secret) in the caller's tenant. Only the SHA-256 of its secret is stored: the key cannot be shown again. Unknown fields are refused.",
    request_body = CreateKey,
    responses(
        (
            status = 201,
            description = "The key, with its secret, shown once.",
            headers(("Location" = String, description = "`/v1/keys/{id}`.")),
            body = CreatedKey,
        ),
        (
            status = 422,
            description = "The body does not decode into a key request: an unknown or missing field, an unknown scope, a wrong type.",
            body = ProblemDetails,
            content_type = "application/problem+json",
        ),
        V1Errors, BadRequest, BodyErrors, NoKeyStore, Unavailable,
    ),
)]
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
    let created = CreatedKey {
        view: KeyView::of(&stored, now),
        key: minted.key,
    };
    let mut response = super::created(&format!("/v1/keys/{}", stored.id), created);
    // The key is shown once: no cache may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /v1/keys`.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "listKeys",
    summary = "The caller's tenant's API keys, newest first, revoked ones included (admin scope); never their secrets nor hashes.",
    responses(
        (status = 200, description = "The keys.", body = KeyList),
        V1Errors, NoKeyStore, Unavailable,
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let keys = issued(&state)?.store().list(&principal.tenant).await?;
    let now = Timestamp::now();
    let keys = keys.iter().map(|k| KeyView::of(k, now)).collect();
    Ok(Json(KeyList { keys }).into_response())
}

/// `DELETE /v1/keys/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "revokeKey",
    summary = "Revokes an API key (admin scope).",
    description = "The key stops passing at once on the node that revoked it, and on every other node within `[auth] key_cache_ttl` (5 s by default). Revoking a revoked key again changes nothing (204).",
    params(("id" = String, Path, description = "The key's id (the part between `trb_` and the secret).")),
    responses(
        (status = 204, description = "Revoked."),
        (
            status = 404,
            description = "No key with this id in the caller's tenant.",
            body = ProblemDetails,
            content_type = "application/problem+json",
        ),
        V1Errors, NoKeyStore, Unavailable,
    ),
)]
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
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};
    use serde_json::{Value, json};
    use tributary_core::parse::ParseError;

    use super::*;

    fn body(json: Value) -> Result<CreateKey, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[tokio::test]
    async fn a_key_repeated_in_a_body_is_a_400_naming_it() {
        let request = |body: &'static str| {
            Request::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let twice = r#"{"scopes": ["admin"], "scopes": ["read"]}"#;
        match ApiJson::<CreateKey>::from_request(request(twice), &()).await {
            Err(ApiError::Events(ParseError::DuplicateKey { key, line, .. })) => {
                assert_eq!((key.as_str(), line), ("scopes", 1));
            }
            other => panic!("{other:?}"),
        }
        let once = r#"{"scopes": ["read"]}"#;
        let ApiJson(body) = ApiJson::<CreateKey>::from_request(request(once), &())
            .await
            .unwrap();
        assert_eq!(body.scopes, BTreeSet::from([Scope::Read]));
        // What serde refuses is refused as before (an unknown field: a 422).
        let unknown = r#"{"scopes": ["read"], "colour": 1}"#;
        let error = ApiJson::<CreateKey>::from_request(request(unknown), &())
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
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

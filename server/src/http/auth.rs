//! Bearer tokens with roles. `admin` may do everything; `checkout` may
//! reserve, commit, release and read; `read` may only read. A presented
//! token is hashed (SHA-256) and compared with every configured token's
//! hash in constant time, with no early exit, so neither timing nor length
//! tells an attacker how close a guess was. With no tokens configured,
//! authentication is off (allowed on loopback, or with `--insecure-no-auth`).

use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Checkout,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "checkout" => Some(Role::Checkout),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a caller with this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Checkout => matches!(needed, Role::Checkout | Role::Read),
            Role::Read => needed == Role::Read,
        }
    }
}

/// The configured tokens, kept only as hashes.
#[derive(Default)]
pub struct Tokens {
    hashes: Vec<([u8; 32], Role)>,
}

impl Tokens {
    pub fn new(tokens: &[(String, Role)]) -> Tokens {
        Tokens { hashes: tokens.iter().map(|(token, role)| (Sha256::digest(token.as_bytes()).into(), *role)).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The role of a presented token, if it is one of ours.
    fn role_of(&self, presented: &str) -> Option<Role> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (hash, role) in &self.hashes {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(*role);
            }
        }
        found
    }
}

/// The authenticated caller, for handlers that check per op (`/v1/batch`).
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Role);

/// Admits a request whose token has at least `needed`'s rights.
pub async fn require(
    State((state, needed)): State<(AppState, Role)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let role = if state.tokens().is_empty() {
        Role::Admin
    } else {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required"))?;
        state
            .tokens()
            .role_of(presented)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown bearer token"))?
    };
    if !role.allows(needed) {
        return Err(forbidden(needed));
    }
    request.extensions_mut().insert(Caller(role));
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` value (the scheme's
/// name is case-insensitive, RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

pub fn forbidden(needed: Role) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this needs the {needed:?} role").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_admin_checkout_read() {
        assert!(
            Role::Admin.allows(Role::Admin) && Role::Admin.allows(Role::Checkout) && Role::Admin.allows(Role::Read)
        );
        assert!(
            !Role::Checkout.allows(Role::Admin)
                && Role::Checkout.allows(Role::Checkout)
                && Role::Checkout.allows(Role::Read)
        );
        assert!(!Role::Read.allows(Role::Admin) && !Role::Read.allows(Role::Checkout) && Role::Read.allows(Role::Read));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("BEARER  s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("Basic s3cret"), None);
        assert_eq!(bearer_token("Bearers3cret"), None);
    }

    #[test]
    fn only_configured_tokens_have_a_role() {
        let tokens = Tokens::new(&[("s3cret".into(), Role::Checkout), ("root".into(), Role::Admin)]);
        assert_eq!(tokens.role_of("s3cret"), Some(Role::Checkout));
        assert_eq!(tokens.role_of("root"), Some(Role::Admin));
        assert_eq!(tokens.role_of("s3cre"), None);
        assert_eq!(tokens.role_of(""), None);
    }
}

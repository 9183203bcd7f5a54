//! Redeeming an authorization code (`RefreshTokenGrantBuilder::redeem_code`) against a local
//! token endpoint (wiremock) that records the request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use outbound::oauth::RefreshTokenGrant;
use outbound::ErrorKind;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "app-secret-CANARY";
const CODE: &str = "auth-code-CANARY";

fn builder(server: &MockServer) -> outbound::oauth::RefreshTokenGrantBuilder {
    RefreshTokenGrant::microsoft("contoso", "app-id")
        .authority(server.uri())
        .client_secret(SecretString::from(SECRET))
        .scope("https://outlook.office.com/SMTP.Send offline_access")
}

#[tokio::test]
async fn redeems_a_code_for_an_access_and_a_refresh_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-1", "token_type": "Bearer", "expires_in": 3599,
            "refresh_token": "rt-1", "scope": "https://outlook.office.com/SMTP.Send"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (token, refresh) = builder(&server)
        .redeem_code(&SecretString::from(CODE), "https://app.example.com/cb")
        .await
        .unwrap();
    assert_eq!(token.secret().expose_secret(), "at-1");
    assert!(token.remaining().unwrap().as_secs() > 3500);
    assert_eq!(refresh.unwrap().expose_secret(), "rt-1");

    let requests = server.received_requests().await.unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("authorization_code"));
    assert_eq!(get("code"), Some(CODE));
    assert_eq!(get("redirect_uri"), Some("https://app.example.com/cb"));
    assert_eq!(get("client_id"), Some("app-id"));
    assert_eq!(get("client_secret"), Some(SECRET));
    assert_eq!(
        get("scope"),
        Some("https://outlook.office.com/SMTP.Send offline_access")
    );
}

#[tokio::test]
async fn a_refused_code_is_an_auth_error_without_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": format!("AADSTS70008: The provided authorization code {CODE} has expired.")
        })))
        .mount(&server)
        .await;
    let err = builder(&server)
        .redeem_code(&SecretString::from(CODE), "https://app.example.com/cb")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("authorization code"), "{shown}");
    assert!(!shown.contains(CODE) && !shown.contains(SECRET), "{shown}");
}

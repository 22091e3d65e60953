//! The OpenAPI document: served, complete for the routes that exist, with both ways to sign in.

use testkit::TestApp;

#[tokio::test]
async fn the_openapi_document_describes_every_api_route_and_its_security() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.expect("json");
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/v1/me", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/users", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/{username}", "patch"),
        ("/api/v1/tokens", "get"),
        ("/api/v1/tokens", "post"),
        ("/api/v1/tokens/{id}", "delete"),
        ("/api/v1/instances", "get"),
        ("/api/v1/instances", "post"),
        ("/api/v1/instances/{id}/heartbeat", "put"),
        ("/api/v1/instances/{id}", "delete"),
        ("/api/v1/discovery/{service}", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is documented");
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
}

#[tokio::test]
async fn every_schema_reference_in_the_openapi_document_resolves() {
    let app = testkit::TestApp::spawn().await;
    let document: serde_json::Value = app.get("/api/openapi.json").await.json().await.expect("json");
    let schemas = document["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut missing = Vec::new();
    let mut stack = vec![&document];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(|r| r.as_str()) {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    if !schemas.contains_key(name) {
                        missing.push(reference.to_owned());
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(missing.is_empty(), "references to schemas the document doesn't define: {missing:?}");
}

//! The hand-maintained OpenAPI document the gateway serves (`gateway/assets/openapi.json`)
//! names every route of the console's JSON API with its methods, and nothing the
//! console does not serve. The routes are read from the router's source (`app.rs`, and
//! `live/mod.rs` for the live feed and the audit list), so a new route without its entry in
//! the document fails here.

use std::collections::{BTreeMap, BTreeSet};

fn source(file: &str) -> String {
    std::fs::read_to_string(format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `.route("path", get(..).post(..))` calls in `text`: path → methods.
fn routes(text: &str, prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found = BTreeMap::new();
    for call in text.split(".route(").skip(1) {
        // The call ends where the next builder call or the statement does.
        let call = call.split(";").next().unwrap();
        let path = call.split('"').nth(1).expect("a path literal");
        let methods: BTreeSet<String> = ["get", "post", "put", "delete", "patch"]
            .iter()
            .filter(|m| {
                call.contains(&format!("({m}("))
                    || call.contains(&format!(" {m}("))
                    || call.contains(&format!(".{m}("))
            })
            .map(|m| m.to_string())
            .collect();
        found.insert(format!("{prefix}{path}"), methods);
    }
    found
}

#[test]
fn the_openapi_document_names_every_console_api_route_and_method() {
    let app = source("app.rs");
    let api_block = app
        .split("let api = Router::new()")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let mut served = routes(&format!("{api_block};"), "/console/api");
    for (path, methods) in routes(&source("live/mod.rs"), "") {
        if path.starts_with("/console/api/") {
            served.insert(path, methods);
        }
    }
    assert!(
        served.contains_key("/console/api/orders/{id}/cancel"),
        "{served:?}"
    );

    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../gateway/assets/openapi.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/console/api/"))
        .map(|(p, ops)| {
            let methods = ops
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| matches!(k.as_str(), "get" | "post" | "put" | "delete" | "patch"))
                .cloned()
                .collect();
            (p.clone(), methods)
        })
        .collect();
    assert_eq!(
        served, documented,
        "the console's API routes (left) and openapi.json (right) differ"
    );
    // Each documented change has its request body and the shared error shape.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/console/api/orders/") {
            continue;
        }
        if let Some(post) = ops.get("post")
            && !path.ends_with("/resend")
        {
            assert!(
                post["requestBody"]["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{path}"
            );
            assert!(
                post["responses"]["200"].is_object() && post["responses"]["409"].is_object(),
                "{path}"
            );
        }
    }
}

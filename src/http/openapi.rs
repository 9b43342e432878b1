//! The OpenAPI document, derived from the route table so it cannot drift from what is
//! served or from who may call it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Access, BodyKind, Route, schema_of, schema_ref};
use crate::config::Config;

/// OpenAPI refers to schemas as `#/components/schemas/Name`; utoipa emits refs that way.
pub fn document(routes: &[Route], config: &Config) -> Value {
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    // The error bodies every route may answer with (and FieldError, which Problem
    // refers to).
    let mut schemas: serde_json::Map<String, Value> = [
        schema_of::<crate::error::Problem>().1,
        schema_of::<super::auth::OAuthErrorBody>().1,
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in routes.iter().filter(|r| !r.mounted && !r.page) {
        for (name, schema) in &r.schemas {
            schemas.insert(name.clone(), schema.clone());
        }
        let mut op = serde_json::Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert("tags".into(), json!([r.tag]));
        op.insert("description".into(), json!(format!("Access: {}.", r.access.describe())));
        if r.access != Access::Public {
            op.insert("security".into(), json!([{ "bearer": [] }, { "oauth2": [] }]));
        }
        if let Some((kind, name)) = &r.body {
            let media = match kind {
                BodyKind::Json => "application/json",
                BodyKind::Form => "application/x-www-form-urlencoded",
            };
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": { media: { "schema": schema_ref(name) } }}),
            );
        }
        let mut responses = serde_json::Map::new();
        for (status, schema) in &r.responses {
            let mut resp = json!({ "description": reason(*status) });
            if let Some(schema) = schema {
                resp["content"] = json!({ "application/json": { "schema": schema } });
            }
            responses.insert(status.to_string(), resp);
        }
        let problem = json!({ "application/problem+json": { "schema": schema_ref("Problem") } });
        let answer = |description: &str, content: &Value| json!({ "description": description, "content": content });
        let mut refusals: Vec<(&str, Value)> = Vec::new();
        match &r.body {
            Some((BodyKind::Json, _)) => refusals.extend([
                ("400", answer("A body that does not parse", &problem)),
                ("415", answer("A body of another media type", &problem)),
                ("422", answer("Invalid input", &problem)),
            ]),
            // The OAuth endpoints answer every refusal in OAuth's own format.
            Some((BodyKind::Form, _)) => refusals.push((
                "400",
                answer(
                    "Refused, in OAuth's error format (RFC 6749 section 5.2)",
                    &json!({ "application/json": { "schema": schema_ref("OAuthErrorBody") } }),
                ),
            )),
            None if !r.query.is_empty() => refusals.extend([
                ("400", answer("A query string that does not decode", &problem)),
                ("422", answer("Invalid input", &problem)),
            ]),
            None => {}
        }
        if path_params(r.path).iter().any(|(_, rest)| !rest) {
            refusals.push(("404", answer("Nothing by that name", &problem)));
            if !refusals.iter().any(|(status, _)| *status == "422") {
                refusals.push(("422", answer("Invalid input", &problem)));
            }
        }
        if r.access != Access::Public {
            refusals.push(("401", answer("Missing or invalid token", &problem)));
        }
        if matches!(r.access, Access::Permission(_) | Access::Role(_) | Access::Person) {
            refusals.push(("403", answer("Missing permission", &problem)));
        }
        for (status, refusal) in refusals {
            responses.insert(status.into(), refusal);
        }
        op.insert("responses".into(), Value::Object(responses));
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|(p, rest)| {
                let mut param = json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } });
                if rest {
                    param["description"] = json!("The rest of the path, slashes included.");
                }
                param
            })
            .collect();
        params.extend(r.query.iter().map(|(name, required, field)| {
            let mut schema = field.clone();
            let description = schema.as_object_mut().and_then(|f| f.remove("description"));
            let mut param = json!({ "name": name, "in": "query", "required": required, "schema": schema });
            if let Some(d) = description {
                param["description"] = d;
            }
            param
        }));
        if !params.is_empty() {
            op.insert("parameters".into(), json!(params));
        }
        paths
            .entry(config.path(&template(r.path)))
            .or_default()
            .insert(r.method.as_str().to_ascii_lowercase(), Value::Object(op));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Authentication and authorization service. Use Authorize with the password flow to try authenticated routes.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "oauth2": { "type": "oauth2", "flows": { "password": { "tokenUrl": config.path("/auth/token"), "refreshUrl": config.path("/auth/token"), "scopes": {} } } },
            },
        },
    })
}

/// A route's path as an OpenAPI path template: the router's catch-all `{*rest}` is
/// `{rest}` there (OpenAPI has no syntax of its own for it).
pub fn template(path: &str) -> String {
    path.replace("{*", "{")
}

/// The path's parameters, each with whether it takes the rest of the path.
fn path_params(path: &str) -> Vec<(&str, bool)> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.strip_prefix('*').map_or((s, false), |rest| (rest, true)))
        .collect()
}

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Response")
}

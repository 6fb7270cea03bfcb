//! The HTTP face of the emulator: routes parsed by hand from the API path
//! (`/api/v1/...`, `/apis/<group>/<version>/...`), because the API's own
//! grammar (namespaced or not, `/status`) does not fit a route table well.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_stream::wrappers::BroadcastStream;

use crate::resources::Resource;
use crate::store::{ApiError, Selector, Store};

type Params = Query<HashMap<String, String>>;

pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3))
        .route("/openapi/v3/{*path}", get(openapi_v3_document))
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/api/{*rest}", axum::routing::any(dispatch_core))
        .route("/apis/{*rest}", axum::routing::any(dispatch_group))
        .layer(middleware::from_fn_with_state(store.clone(), faults))
        .with_state(store)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &self.status(),
        )
    }
}

async fn faults(State(store): State<Arc<Store>>, request: Request, next: Next) -> Response {
    let faults = store.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if store.take_failure() {
        return ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: "the server is currently unable to handle the request (injected fault)".into(),
        }
        .into_response();
    }
    next.run(request).await
}

async fn version(State(store): State<Arc<Store>>) -> Response {
    let git = &store.options.git_version;
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "33", "gitVersion": git, "gitCommit": "0000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        }),
    )
}

/// kubectl asks for the v2 document as protobuf (gnostic's
/// `openapi_v2.Document`); a minimal one — swagger "2.0" and an info with
/// title and version, no definitions — makes it skip client-side validation
/// of kinds it does not know, as it does for custom resources.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    if wants_protobuf {
        let mut info = vec![0x0a, 10];
        info.extend_from_slice(b"Kubernetes");
        info.extend_from_slice(&[0x12, 7]);
        info.extend_from_slice(b"v1.33.0");
        let mut document = vec![0x0a, 3];
        document.extend_from_slice(b"2.0");
        document.push(0x12);
        document.push(info.len() as u8);
        document.extend_from_slice(&info);
        return (
            [(
                header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )],
            document,
        )
            .into_response();
    }
    json_response(
        StatusCode::OK,
        &json!({ "swagger": "2.0", "info": { "title": "Kubernetes", "version": "v1.33.0" }, "paths": {}, "definitions": {} }),
    )
}

async fn openapi_v3(State(store): State<Arc<Store>>) -> Response {
    json_response(StatusCode::OK, &crate::openapi::index(&store.resources()))
}

async fn openapi_v3_document(
    State(store): State<Arc<Store>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let crds: Vec<Value> = store
        .objects_of("apiextensions.k8s.io", "customresourcedefinitions")
        .into_iter()
        .map(|(_, crd)| crd)
        .collect();
    match crate::openapi::document(&path, &store.resources(), &crds) {
        Some(document) => json_response(StatusCode::OK, &document),
        None => ApiError::not_found_path(&format!("openapi/v3/{path}")).into_response(),
    }
}

async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
        }),
    )
}

async fn groups(State(store): State<Arc<Store>>) -> Response {
    let mut seen: Vec<(String, String)> = Vec::new();
    for resource in store
        .resources()
        .into_iter()
        .filter(|r| !r.group.is_empty())
    {
        if !seen.contains(&(resource.group.clone(), resource.version.clone())) {
            seen.push((resource.group, resource.version));
        }
    }
    let mut by_group: Vec<(String, Vec<String>)> = Vec::new();
    for (group, version) in seen {
        match by_group.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => by_group.push((group, vec![version])),
        }
    }
    let groups: Vec<Value> = by_group
        .into_iter()
        .map(|(group, versions)| {
            let entries: Vec<Value> = versions
                .iter()
                .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
                .collect();
            json!({ "name": group, "versions": entries, "preferredVersion": entries[0] })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

async fn dispatch_core(
    State(store): State<Arc<Store>>,
    method: Method,
    Query(params): Params,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let path = request.uri().path().trim_start_matches("/api/").to_string();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let Some((version, rest)) = segments.split_first() else {
        return ApiError::not_found_path(&path).into_response();
    };
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    handle(store, "", version, rest, method, params, headers, body).await
}

async fn dispatch_group(
    State(store): State<Arc<Store>>,
    method: Method,
    Query(params): Params,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let path = request
        .uri()
        .path()
        .trim_start_matches("/apis/")
        .to_string();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segments.len() < 2 {
        return ApiError::not_found_path(&path).into_response();
    }
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    handle(
        store,
        &segments[0],
        &segments[1],
        &segments[2..],
        method,
        params,
        headers,
        body,
    )
    .await
}

impl ApiError {
    fn not_found_path(path: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
        }
    }
}

/// What a path names, after the group and version.
struct Target {
    resource: Resource,
    namespace: String,
    name: Option<String>,
    status: bool,
    /// The `/scale` subresource of a workload.
    scale: bool,
    /// The `/log` subresource of a pod.
    log: bool,
}

fn resolve(store: &Store, group: &str, version: &str, rest: &[String]) -> Result<Target, ApiError> {
    let find = |plural: &str| {
        store
            .find(group, version, plural)
            .ok_or_else(|| ApiError::not_found_path(&format!("{group}/{version}/{plural}")))
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (plural, namespace, name, status) = match rest.as_slice() {
        [plural] => (*plural, "", None, false),
        [plural, name] => (*plural, "", Some(*name), false),
        ["namespaces", name, "status"] if group.is_empty() => ("namespaces", "", Some(*name), true),
        ["namespaces", ns, plural] => (*plural, *ns, None, false),
        [plural, name, "status"] => (*plural, "", Some(*name), true),
        ["namespaces", ns, plural, name] => (*plural, *ns, Some(*name), false),
        ["namespaces", ns, plural, name, "status"] => (*plural, *ns, Some(*name), true),
        ["namespaces", ns, plural, name, sub @ ("scale" | "log")]
            if (*sub == "scale" && scalable(group, plural))
                || (*sub == "log" && group.is_empty() && *plural == "pods") =>
        {
            return Ok(Target {
                resource: find(plural)?,
                namespace: ns.to_string(),
                name: Some(name.to_string()),
                status: false,
                scale: *sub == "scale",
                log: *sub == "log",
            });
        }
        _ => return Err(ApiError::not_found_path(&rest.join("/"))),
    };
    let resource = find(plural)?;
    if status && !resource.status {
        return Err(ApiError::not_found_path(&format!("{plural}/status")));
    }
    Ok(Target {
        resource,
        namespace: namespace.to_string(),
        name: name.map(str::to_string),
        status,
        scale: false,
        log: false,
    })
}

/// The workloads with a `/scale` subresource.
pub(crate) fn scalable(group: &str, plural: &str) -> bool {
    group == "apps" && matches!(plural, "deployments" | "statefulsets" | "replicasets")
}

/// An `autoscaling/v1` Scale of a workload.
fn scale_of(object: &Value) -> Value {
    let labels = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "resourceVersion": object["metadata"]["resourceVersion"],
            "uid": object["metadata"]["uid"],
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": labels,
        },
    })
}

/// GET, PATCH (merge) or PUT of a workload's Scale: only `spec.replicas`
/// changes the workload.
fn scale(
    store: &Store,
    target: &Target,
    method: &Method,
    body: &Bytes,
    manager: &str,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    if *method != Method::GET {
        let change = parse_body(body, false)?;
        let replicas = change["spec"]["replicas"]
            .as_i64()
            .ok_or_else(|| ApiError::invalid("a scale change needs spec.replicas, a number"))?;
        if replicas < 0 {
            return Err(ApiError::invalid(format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            )));
        }
        store.merge_patch(
            &target.resource,
            &target.namespace,
            name,
            &json!({ "spec": { "replicas": replicas } }),
            manager,
            dry_run,
            false,
        )?;
    }
    let object = store.get(&target.resource, &target.namespace, name)?;
    Ok(json_response(StatusCode::OK, &scale_of(&object)))
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    store: Arc<Store>,
    group: &str,
    version: &str,
    rest: &[String],
    method: Method,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if rest.is_empty() {
        return resource_list(&store, group, version);
    }
    let target = match resolve(&store, group, version, rest) {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    let param = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
    let dry_run = param("dryRun") == "All";
    let manager = params
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "unknown".to_string());
    let namespace = target.namespace.clone();
    let watching = param("watch") == "true" || param("watch") == "1";
    let verb = verb_of(&method, target.name.is_some(), watching);
    if !crate::access::allowed(
        &store.denied(),
        verb,
        &target.resource.group,
        &target.resource.plural,
    ) {
        return crate::access::forbidden(
            verb,
            &target.resource,
            &namespace,
            target.name.as_deref(),
        )
        .into_response();
    }
    // Bodies are JSON (or YAML for apply); kubectl creates built-in kinds
    // in protobuf, decoded for the kinds it sends (`protobuf`). Anything
    // else is refused as a real server refuses a media type it does not
    // serve (415), so a client can tell.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let unsupported = |why: String| {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({why})"
            ),
        }
        .into_response()
    };
    let body = if matches!(method, Method::POST | Method::PUT) && content_type.contains("protobuf")
    {
        match crate::protobuf::decode(&body) {
            Ok(object) => Bytes::from(object.to_string()),
            Err(why) => return unsupported(why),
        }
    } else if content_type.contains("cbor") {
        return unsupported(format!("got {content_type}"));
    } else {
        body
    };
    // `kubectl get` asks for a Table; `includeObject` says what each row
    // carries besides its cells.
    let table = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|accept| crate::table::wanted(accept))
        .map(|_| param("includeObject").to_string());
    if target.resource.is_review() {
        return match method {
            Method::POST => parse_body(&body, false)
                .and_then(|review| crate::access::review(&store.denied(), &review))
                .map(|answer| json_response(StatusCode::CREATED, &answer))
                .unwrap_or_else(IntoResponse::into_response),
            method => ApiError {
                code: 405,
                reason: "MethodNotAllowed",
                message: format!("{method} is not supported for access reviews"),
            }
            .into_response(),
        };
    }
    if target.log {
        return pod_log(&store, &target, &params).unwrap_or_else(IntoResponse::into_response);
    }
    if target.scale {
        return scale(&store, &target, &method, &body, &manager, dry_run)
            .unwrap_or_else(IntoResponse::into_response);
    }
    let outcome: Result<Response, ApiError> = match (method, target.name.clone()) {
        (Method::GET, Some(name)) => {
            store
                .get(&target.resource, &namespace, &name)
                .map(|o| match &table {
                    Some(include) => {
                        let version = o["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default();
                        json_response(
                            StatusCode::OK,
                            &table_of(
                                &store,
                                &target.resource,
                                std::slice::from_ref(&o),
                                include,
                                version,
                            ),
                        )
                    }
                    None => json_response(StatusCode::OK, &o),
                })
        }
        (Method::GET, None) if watching => Ok(watch(store.clone(), target, &params, table)),
        (Method::GET, None) => {
            let ns = (!namespace.is_empty()).then_some(namespace.as_str());
            store
                .list(
                    &target.resource,
                    ns,
                    param("labelSelector"),
                    param("fieldSelector"),
                )
                .map(|(items, version)| match &table {
                    Some(include) => json_response(
                        StatusCode::OK,
                        &table_of(
                            &store,
                            &target.resource,
                            &items,
                            include,
                            &version.to_string(),
                        ),
                    ),
                    None => json_response(
                        StatusCode::OK,
                        &json!({
                            "kind": format!("{}List", target.resource.kind),
                            "apiVersion": target.resource.api_version(),
                            "metadata": { "resourceVersion": version.to_string() },
                            "items": list_items(&target.resource, items),
                        }),
                    ),
                })
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match parse_body(&body, content_type.contains("yaml")) {
                Err(error) => Err(error),
                // An apply that creates the object is a create too, for
                // RBAC as for a real server.
                Ok(_)
                    if content_type.starts_with("application/apply-patch")
                        && store.get(&target.resource, &namespace, &name).is_err()
                        && !crate::access::allowed(
                            &store.denied(),
                            "create",
                            &target.resource.group,
                            &target.resource.plural,
                        ) =>
                {
                    Err(crate::access::forbidden(
                        "create",
                        &target.resource,
                        &namespace,
                        Some(&name),
                    ))
                }
                Ok(patch) if content_type.starts_with("application/apply-patch") => store
                    .apply(
                        &target.resource,
                        &namespace,
                        &name,
                        &patch,
                        params.get("fieldManager").map(String::as_str).unwrap_or(""),
                        param("force") == "true",
                        dry_run,
                        target.status,
                    )
                    .map(|w| {
                        json_response(
                            if w.created {
                                StatusCode::CREATED
                            } else {
                                StatusCode::OK
                            },
                            &w.object,
                        )
                    }),
                Ok(patch)
                    if content_type.starts_with("application/merge-patch")
                        || content_type.starts_with("application/strategic-merge-patch")
                        || (content_type.starts_with("application/json-patch")
                            && patch.is_array()) =>
                {
                    store
                        .merge_patch(
                            &target.resource,
                            &namespace,
                            &name,
                            &patch,
                            &manager,
                            dry_run,
                            target.status,
                        )
                        .map(|w| json_response(StatusCode::OK, &w.object))
                }
                Ok(_) => Err(ApiError {
                    code: 415,
                    reason: "UnsupportedMediaType",
                    message: format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type})"
                    ),
                }),
            }
        }
        (Method::PUT, Some(name)) => parse_body(&body, false)
            .and_then(|object| {
                store.replace(
                    &target.resource,
                    &namespace,
                    &name,
                    &object,
                    &manager,
                    dry_run,
                )
            })
            .map(|w| json_response(StatusCode::OK, &w.object)),
        (Method::POST, None) => parse_body(&body, false)
            .and_then(|object| {
                store.create(&target.resource, &namespace, &object, &manager, dry_run)
            })
            .map(|w| json_response(StatusCode::CREATED, &w.object)),
        (Method::DELETE, Some(name))
            if target.resource.group.is_empty() && target.resource.plural == "pods" =>
        {
            // DeleteOptions come as the body (kube-rs) or as a parameter (kubectl).
            let grace = parse_body(&body, false)
                .ok()
                .and_then(|options| options["gracePeriodSeconds"].as_i64())
                .or_else(|| param("gracePeriodSeconds").parse().ok());
            store
                .delete_pod(&target.resource, &namespace, &name, grace, dry_run)
                .map(|o| json_response(StatusCode::OK, &o))
        }
        (Method::DELETE, Some(name)) => store
            .delete(&target.resource, &namespace, &name, dry_run)
            .map(|o| json_response(StatusCode::OK, &o)),
        (Method::DELETE, None) => {
            let ns = (!namespace.is_empty()).then_some(namespace.as_str());
            store.delete_collection(&target.resource, ns, param("labelSelector"), dry_run).map(|items| {
                json_response(StatusCode::OK, &json!({ "kind": format!("{}List", target.resource.kind), "apiVersion": target.resource.api_version(), "metadata": {}, "items": items }))
            })
        }
        (method, _) => Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{method} is not supported here"),
        }),
    };
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// What a pod's container printed (`?container=`, `tailLines=`,
/// `limitBytes=`, `sinceTime=`, `timestamps=`, `follow=`), as text.
/// A container that has not started has no log yet, as on a real server.
fn pod_log(
    store: &Arc<Store>,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let pod = store.get(&target.resource, &target.namespace, name)?;
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // An init container's log is asked for by name too.
    let inits: Vec<&str> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match (params.get("container"), containers.as_slice()) {
        (Some(wanted), _)
            if containers.contains(&wanted.as_str()) || inits.contains(&wanted.as_str()) =>
        {
            wanted.as_str()
        }
        (Some(wanted), _) => {
            return Err(ApiError::bad_request(format!(
                "container {wanted} is not valid for pod {name}"
            )));
        }
        (None, [only]) => only,
        (None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let waiting = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .find(|c| c["name"] == container)
        .and_then(|c| c["state"]["waiting"]["reason"].as_str());
    if let Some(reason) = waiting {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let since = params
        .get("sinceTime")
        .and_then(|t| crate::store::parse_rfc3339_nanos(t));
    let stamped = params.get("timestamps").is_some_and(|v| v == "true");
    let follow = params.get("follow").is_some_and(|v| v == "true");
    let render = move |lines: &[(i128, String)]| -> String {
        lines
            .iter()
            .map(|(at, line)| {
                if stamped {
                    format!("{} {line}", crate::store::rfc3339_nanos(*at))
                } else {
                    line.clone()
                }
            })
            .collect()
    };
    let mut lines = store.log_lines(&target.namespace, name, container);
    lines.retain(|(at, _)| since.is_none_or(|since| *at >= since));
    if let Some(tail) = params
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
    {
        lines = lines.split_off(lines.len().saturating_sub(tail));
    }
    if follow {
        return Ok(followed(
            store.clone(),
            target,
            container.to_string(),
            lines,
            render,
        ));
    }
    let mut text = render(&lines);
    if let Some(limit) = params
        .get("limitBytes")
        .and_then(|l| l.parse::<usize>().ok())
        && text.len() > limit
    {
        // A real server cuts at the byte; a client decodes lossily.
        text = String::from_utf8_lossy(&text.as_bytes()[..limit]).into_owned();
    }
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// `follow=true`: what the container printed so far, then each new line as
/// it comes, until the container ended (and everything was sent) or the
/// pod is gone.
fn followed(
    store: Arc<Store>,
    target: &Target,
    container: String,
    first: Vec<(i128, String)>,
    render: impl Fn(&[(i128, String)]) -> String + Send + Sync + 'static,
) -> Response {
    let (namespace, pod) = (
        target.namespace.clone(),
        target.name.clone().unwrap_or_default(),
    );
    let resource = target.resource.clone();
    // A stream the fault cuts breaks off at `cut`.
    let cut = store.faults().cut_logs_after;
    let cut = (!cut.is_zero()).then(|| tokio::time::Instant::now() + cut);
    let last = first.last().map_or(i128::MIN, |(at, _)| *at);
    let opening = render(&first);
    let render = Arc::new(render);
    let stream = futures_util::stream::unfold((last, Some(opening)), move |(last, opening)| {
        let (store, namespace, pod, container, resource) = (
            store.clone(),
            namespace.clone(),
            pod.clone(),
            container.clone(),
            resource.clone(),
        );
        let render = render.clone();
        async move {
            if let Some(text) = opening.filter(|t| !t.is_empty()) {
                return Some((text, (last, None)));
            }
            loop {
                let ended = match store.get(&resource, &namespace, &pod) {
                    Err(_) => true,
                    Ok(pod) => {
                        matches!(
                            pod["status"]["phase"].as_str(),
                            Some("Succeeded" | "Failed")
                        ) || pod["status"]["containerStatuses"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .chain(
                                pod["status"]["initContainerStatuses"]
                                    .as_array()
                                    .into_iter()
                                    .flatten(),
                            )
                            .any(|c| {
                                c["name"] == container.as_str()
                                    && c["state"]["terminated"].is_object()
                            })
                    }
                };
                if cut.is_some_and(|cut| tokio::time::Instant::now() >= cut) {
                    return None;
                }
                let new: Vec<(i128, String)> = store
                    .log_lines(&namespace, &pod, &container)
                    .into_iter()
                    .filter(|(at, _)| *at > last)
                    .collect();
                if let Some((at, _)) = new.last() {
                    let at = *at;
                    return Some((render(&new), (at, None)));
                }
                if ended {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .map(Ok::<_, std::io::Error>)
    // Cut: the body breaks off with an error, as a dropped connection does
    // (the client sees the stream fail, not end).
    .chain(futures_util::stream::once(async move {
        if cut.is_some_and(|cut| tokio::time::Instant::now() >= cut) {
            Err(std::io::Error::other("log stream cut"))
        } else {
            Ok(String::new())
        }
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A list's items as a real server sends them: a built-in kind's typed
/// list leaves each item's `apiVersion` and `kind` out (the list says
/// them); a custom resource's keeps them.
fn list_items(resource: &crate::Resource, items: Vec<Value>) -> Vec<Value> {
    let typed = crate::resources::builtins()
        .iter()
        .any(|b| b.group == resource.group && b.plural == resource.plural);
    if !typed {
        return items;
    }
    items
        .into_iter()
        .map(|mut item| {
            if let Some(map) = item.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect()
}

/// The RBAC verb of a request.
fn verb_of(method: &Method, named: bool, watching: bool) -> &'static str {
    match *method {
        Method::GET if named => "get",
        Method::GET if watching => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

/// A Table of `objects`, with a custom resource's own printer columns.
fn table_of(
    store: &Store,
    resource: &Resource,
    objects: &[Value],
    include: &str,
    version: &str,
) -> Value {
    let crd = store.object(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        &format!("{}.{}", resource.plural, resource.group),
    );
    crate::table::render(resource, crd.as_ref(), objects, include, version)
}

fn parse_body(body: &Bytes, yaml: bool) -> Result<Value, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    if yaml {
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_str(text)
            .or_else(|_| serde_saphyr::from_str::<Value>(text))
            .map_err(|e| ApiError::bad_request(format!("error decoding the body: {e}")))
    }
}

fn resource_list(store: &Store, group: &str, version: &str) -> Response {
    let resources: Vec<Value> = store
        .resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(Resource::discovery_entries)
        .collect();
    if resources.is_empty() {
        return ApiError::not_found_path(&format!("{group}/{version}")).into_response();
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}

/// A watch: JSON lines of `{"type": ..., "object": ...}`; with
/// `sendInitialEvents=true` every existing object first, then a BOOKMARK
/// annotated `k8s.io/initial-events-end`; bookmarks every second when asked.
fn watch(
    store: Arc<Store>,
    target: Target,
    params: &HashMap<String, String>,
    table: Option<String>,
) -> Response {
    let labels = Selector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .ok();
    let fields = Selector::parse(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .ok();
    let (Some(labels), Some(fields)) = (labels, fields) else {
        return ApiError::bad_request("invalid selector").into_response();
    };
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let resource = target.resource.clone();
    let namespace = target.namespace.clone();
    // A bookmark names the last version this watcher has been through —
    // not the store's, which a watcher behind its events has not reached:
    // resuming from that would skip what it has not been sent.
    let through = Arc::new(AtomicU64::new(store.resource_version()));
    let seen = through.clone();
    let Ok((kept, events)) = store.watch_from(since) else {
        return ApiError {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {since}"),
        }
        .into_response();
    };

    let mut first: Vec<Value> = Vec::new();
    if initial {
        let ns = (!namespace.is_empty()).then_some(namespace.as_str());
        if let Ok((items, _)) = store.list(
            &resource,
            ns,
            params
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or(""),
            params
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or(""),
        ) {
            first.extend(
                items
                    .into_iter()
                    .map(|object| json!({ "type": "ADDED", "object": object })),
            );
        }
        first.push(bookmark(&resource, store.resource_version(), true));
    }
    let kind_resource = resource.clone();
    let wanted = move |event: &crate::store::WatchEvent| {
        event.key.group == kind_resource.group
            && event.key.plural == kind_resource.plural
            && (namespace.is_empty() || event.key.namespace == namespace)
            && event.object["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
                > since
            && labels.matches_labels(&event.object)
            && fields.matches_fields(&event.object)
    };
    let line =
        |event: crate::store::WatchEvent| json!({ "type": event.kind, "object": event.object });
    // From a resourceVersion, what happened since it comes first (the
    // events between a client's list and its watch: a reflector that
    // missed them would wait forever); initial events already stand for
    // the present state.
    if !initial && since > 0 {
        first.extend(kept.into_iter().filter(|e| wanted(e)).map(line));
    }
    // A watcher too slow for the event stream (it lagged behind the
    // channel) is closed, as the apiserver closes one: its client lists and
    // watches again instead of missing events unawares. `None` ends it.
    let live = BroadcastStream::new(events).filter_map(move |event| {
        std::future::ready(match event {
            Ok(event) => {
                if let Some(version) = event.object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    seen.fetch_max(version, Ordering::Relaxed);
                }
                wanted(&event).then(|| Some(line(event)))
            }
            Err(_lagged) => Some(None),
        })
    });
    let ticks =
        tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
            .skip(1)
            .filter_map(move |_| {
                let version = through.load(Ordering::Relaxed);
                std::future::ready(bookmarks.then(|| Some(bookmark(&resource, version, false))))
            });
    // Watched as a Table, each event carries a one-row Table.
    let table_store = store.clone();
    let table_resource = target.resource.clone();
    let stream = futures_util::stream::iter(first.into_iter().map(Some))
        .chain(futures_util::stream::select(live, ticks))
        .take_while(|line| std::future::ready(line.is_some()))
        .filter_map(std::future::ready)
        .take_until(tokio::time::sleep(timeout))
        .map(move |mut line| {
            if let Some(include) = &table
                && line["type"] != "BOOKMARK"
            {
                let object = line["object"].take();
                let version = object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                line["object"] =
                    table_of(&table_store, &table_resource, &[object], include, &version);
            }
            Ok::<_, Infallible>(format!("{line}\n"))
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn bookmark(resource: &Resource, version: u64, initial_end: bool) -> Value {
    let mut metadata = json!({ "resourceVersion": version.to_string() });
    if initial_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "type": "BOOKMARK", "object": { "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": metadata } })
}

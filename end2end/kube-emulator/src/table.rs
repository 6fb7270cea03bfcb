//! The `Table` format (`Accept: application/json;as=Table;g=meta.k8s.io`):
//! what `kubectl get` prints. A real server renders rows itself, with the
//! columns of each kind's printer; kubectl only lays them out. Kinds
//! without a printer get NAME and AGE, custom resources their CRD's
//! `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::resources::Resource;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// How a cell is read from an object.
enum Cell {
    Of(fn(&Value) -> Value),
    /// A CRD printer column: a simple `.a.b.c` JSONPath.
    Path(String),
}

struct Column {
    name: String,
    kind: &'static str,
    format: &'static str,
    /// Columns above 0 are shown only with `-o wide`.
    priority: i64,
    description: &'static str,
    cell: Cell,
}

fn column(name: &str, kind: &'static str, priority: i64, cell: fn(&Value) -> Value) -> Column {
    Column {
        name: name.to_string(),
        kind,
        format: "",
        priority,
        description: "",
        cell: Cell::Of(cell),
    }
}

fn name_column() -> Column {
    Column {
        name: "Name".into(),
        kind: "string",
        format: "name",
        priority: 0,
        description: "Name must be unique within a namespace.",
        cell: Cell::Of(|o| o["metadata"]["name"].clone()),
    }
}

fn age_column() -> Column {
    column("Age", "string", 0, |o| json!(age(o)))
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn text_or(value: &Value, default: &str) -> Value {
    json!(value.as_str().filter(|s| !s.is_empty()).unwrap_or(default))
}

fn containers(object: &Value) -> Vec<&Value> {
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn container_names(object: &Value) -> Value {
    let names: Vec<&str> = containers(object)
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    json!(names.join(","))
}

fn container_images(object: &Value) -> Value {
    let images: Vec<&str> = containers(object)
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    json!(images.join(","))
}

fn selector(object: &Value) -> Value {
    let labels = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| object["spec"]["selector"].as_object());
    let text = labels
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "<none>".into());
    json!(text)
}

fn count(value: &Value) -> Value {
    json!(value.as_object().map_or(0, |m| m.len()))
}

fn pod_ready(pod: &Value) -> Value {
    let statuses = pod["status"]["containerStatuses"].as_array();
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn restarts(pod: &Value) -> Value {
    let total: i64 = pod["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |s| s.iter().map(|c| int(&c["restartCount"])).sum());
    json!(total)
}

fn involved(event: &Value) -> Value {
    let object = &event["involvedObject"];
    json!(format!(
        "{}/{}",
        object["kind"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        object["name"].as_str().unwrap_or_default()
    ))
}

fn last_seen(event: &Value) -> Value {
    let at = event["lastTimestamp"]
        .as_str()
        .or_else(|| event["eventTime"].as_str())
        .or_else(|| event["metadata"]["creationTimestamp"].as_str());
    json!(at.map_or_else(|| "<unknown>".to_string(), since))
}

/// `ready/wanted` replicas of a workload.
fn ready_of_wanted(workload: &Value) -> Value {
    json!(format!(
        "{}/{}",
        int(&workload["status"]["readyReplicas"]),
        workload["spec"]["replicas"].as_i64().unwrap_or(1)
    ))
}

/// What `-o wide` adds for a workload: its containers, images (and selector).
fn wide_workload_columns(with_selector: bool) -> Vec<Column> {
    let mut columns = vec![
        column("Containers", "string", 1, container_names),
        column("Images", "string", 1, container_images),
    ];
    if with_selector {
        columns.push(column("Selector", "string", 1, selector));
    }
    columns
}

/// The printer columns of a built-in kind (kubectl's usual headings).
fn builtin_columns(resource: &Resource) -> Vec<Column> {
    let rest = match (resource.group.as_str(), resource.plural.as_str()) {
        ("apps", "deployments") => vec![
            column("Ready", "string", 0, ready_of_wanted),
            column("Up-to-date", "integer", 0, |o| {
                json!(int(&o["status"]["updatedReplicas"]))
            }),
            column("Available", "integer", 0, |o| {
                json!(int(&o["status"]["availableReplicas"]))
            }),
            age_column(),
        ]
        .into_iter()
        .chain(wide_workload_columns(true))
        .collect(),
        ("apps", "replicasets") => vec![
            column("Desired", "integer", 0, |o| {
                json!(int(&o["spec"]["replicas"]))
            }),
            column("Current", "integer", 0, |o| {
                json!(int(&o["status"]["replicas"]))
            }),
            column("Ready", "integer", 0, |o| {
                json!(int(&o["status"]["readyReplicas"]))
            }),
            age_column(),
        ]
        .into_iter()
        .chain(wide_workload_columns(true))
        .collect(),
        ("apps", "statefulsets") => {
            vec![column("Ready", "string", 0, ready_of_wanted), age_column()]
                .into_iter()
                .chain(wide_workload_columns(false))
                .collect()
        }
        ("apps", "daemonsets") => vec![
            column("Desired", "integer", 0, |o| {
                json!(int(&o["status"]["desiredNumberScheduled"]))
            }),
            column("Current", "integer", 0, |o| {
                json!(int(&o["status"]["currentNumberScheduled"]))
            }),
            column("Ready", "integer", 0, |o| {
                json!(int(&o["status"]["numberReady"]))
            }),
            column("Up-to-date", "integer", 0, |o| {
                json!(int(&o["status"]["updatedNumberScheduled"]))
            }),
            column("Available", "integer", 0, |o| {
                json!(int(&o["status"]["numberAvailable"]))
            }),
            column("Node Selector", "string", 0, |o| {
                let labels = &o["spec"]["template"]["spec"]["nodeSelector"];
                selector(&json!({ "spec": { "selector": labels } }))
            }),
            age_column(),
        ],
        ("batch", "jobs") => vec![
            column("Status", "string", 0, |o| {
                json!(if int(&o["status"]["succeeded"]) > 0 {
                    "Complete"
                } else {
                    "Running"
                })
            }),
            column("Completions", "string", 0, |o| {
                json!(format!(
                    "{}/{}",
                    int(&o["status"]["succeeded"]),
                    o["spec"]["completions"].as_i64().unwrap_or(1)
                ))
            }),
            age_column(),
        ],
        ("", "pods") => vec![
            column("Ready", "string", 0, pod_ready),
            column("Status", "string", 0, |o| json!(pod_status(o))),
            column("Restarts", "string", 0, restarts),
            age_column(),
            column("IP", "string", 1, |o| {
                text_or(&o["status"]["podIP"], "<none>")
            }),
            column("Node", "string", 1, |o| {
                text_or(&o["spec"]["nodeName"], "<none>")
            }),
        ],
        ("", "services") => vec![
            column("Type", "string", 0, |o| {
                text_or(&o["spec"]["type"], "ClusterIP")
            }),
            column("Cluster-IP", "string", 0, |o| {
                text_or(&o["spec"]["clusterIP"], "<none>")
            }),
            column("External-IP", "string", 0, |_| json!("<none>")),
            column("Port(s)", "string", 0, |o| {
                let ports: Vec<String> = o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            int(&p["port"]),
                            p["protocol"].as_str().unwrap_or("TCP")
                        )
                    })
                    .collect();
                json!(if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                })
            }),
            age_column(),
            column("Selector", "string", 1, selector),
        ],
        ("", "namespaces") => vec![
            column("Status", "string", 0, |o| {
                text_or(&o["status"]["phase"], "Active")
            }),
            age_column(),
        ],
        ("", "configmaps") => vec![
            column("Data", "integer", 0, |o| {
                let data = count(&o["data"]).as_u64().unwrap_or(0);
                let binary = count(&o["binaryData"]).as_u64().unwrap_or(0);
                json!(data + binary)
            }),
            age_column(),
        ],
        ("", "secrets") => vec![
            column("Type", "string", 0, |o| text_or(&o["type"], "Opaque")),
            column("Data", "integer", 0, |o| count(&o["data"])),
            age_column(),
        ],
        ("", "events") => {
            return vec![
                column("Last Seen", "string", 0, last_seen),
                column("Type", "string", 0, |o| text_or(&o["type"], "Normal")),
                column("Reason", "string", 0, |o| o["reason"].clone()),
                column("Object", "string", 0, involved),
                column("Source", "string", 1, |o| o["source"]["component"].clone()),
                column("Message", "string", 0, |o| o["message"].clone()),
                column("Count", "integer", 1, |o| json!(int(&o["count"]).max(1))),
                name_column_at(1),
            ];
        }
        _ => vec![age_column()],
    };
    std::iter::once(name_column()).chain(rest).collect()
}

fn name_column_at(priority: i64) -> Column {
    Column {
        priority,
        ..name_column()
    }
}

/// The columns a CRD declares for `version`, after NAME (AGE if none).
fn custom_columns(crd: &Value, version: &str) -> Vec<Column> {
    let declared = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == version)
        .and_then(|v| v["additionalPrinterColumns"].as_array())
        .cloned()
        .unwrap_or_default();
    if declared.is_empty() {
        return vec![name_column(), age_column()];
    }
    let mut columns = vec![name_column()];
    for declared in declared {
        let path = declared["jsonPath"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = match declared["type"].as_str() {
            Some("integer") => "integer",
            Some("number") => "number",
            Some("boolean") => "boolean",
            Some("date") => "date",
            _ => "string",
        };
        columns.push(Column {
            name: declared["name"].as_str().unwrap_or_default().to_string(),
            kind,
            format: "",
            priority: declared["priority"].as_i64().unwrap_or(0),
            description: "",
            cell: Cell::Path(path),
        });
    }
    columns
}

/// A `.a.b.c` path into an object (what CRD printer columns mostly use).
fn at_path<'v>(object: &'v Value, path: &str) -> &'v Value {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(object, |value, key| &value[key])
}

fn cells(columns: &[Column], object: &Value) -> Vec<Value> {
    columns
        .iter()
        .map(|column| match &column.cell {
            Cell::Of(read) => read(object),
            Cell::Path(path) => {
                let value = at_path(object, path);
                match (column.kind, value.as_str()) {
                    // A date column shows how long ago, as a real server does.
                    ("date", Some(at)) => json!(since(at)),
                    _ if value.is_null() => json!(""),
                    _ => value.clone(),
                }
            }
        })
        .collect()
}

/// The Table of `objects`; `crd` is the CRD of a custom resource.
/// `include` is the request's `includeObject` (`None`, `Metadata` — the
/// default — or `Object`).
pub fn render(
    resource: &Resource,
    crd: Option<&Value>,
    objects: &[Value],
    include: &str,
    resource_version: &str,
) -> Value {
    let columns = match crd {
        Some(crd) => custom_columns(crd, &resource.version),
        None => builtin_columns(resource),
    };
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({ "name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({ "cells": cells(&columns, object) });
            match include {
                "None" => {}
                "Object" => row["object"] = object.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn age(object: &Value) -> String {
    object["metadata"]["creationTimestamp"]
        .as_str()
        .map_or_else(|| "<unknown>".to_string(), since)
}

/// How long ago an RFC 3339 time was, as the API server words it.
fn since(at: &str) -> String {
    match crate::store::parse_rfc3339(at) {
        Some(then) => human_duration(crate::store::now_unix() - then),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `HumanDuration`: `45s`, `3m20s`, `25m`, `5h12m`, `3d4h`, `2y10d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if minutes < 10 {
        return with(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

/// A pod's STATUS column, as the API server's printer words it: an init
/// container's progress or failure first, then the last container's
/// waiting or terminated reason (`ContainerCreating`, `Completed`,
/// `Error`, `OOMKilled`, `ErrImagePull`), else the phase.
fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["reason"]
        .as_str()
        .or(status["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    let inits = status["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (index, init) in inits.iter().enumerate() {
        let state = &init["state"];
        if state["terminated"]["exitCode"] == 0 {
            continue;
        }
        return if state["terminated"].is_object() {
            format!(
                "Init:{}",
                state["terminated"]["reason"].as_str().unwrap_or("Error")
            )
        } else if let Some(waiting) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| *r != "PodInitializing")
        {
            format!("Init:{waiting}")
        } else {
            format!("Init:{index}/{}", inits.len())
        };
    }
    let mut running = false;
    for container in status["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
    {
        let state = &container["state"];
        if let Some(waiting) = state["waiting"]["reason"].as_str() {
            reason = waiting.to_string();
        } else if state["terminated"].is_object() {
            reason = match state["terminated"]["reason"].as_str() {
                Some(why) => why.to_string(),
                None => format!("ExitCode:{}", state["terminated"]["exitCode"]),
            };
        } else if container["ready"] == true {
            running = true;
        }
    }
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        reason = "Terminating".into();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_api_server_writes_them() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (25 * 60, "25m"),
            (5 * 3600 + 12 * 60, "5h12m"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (100 * 86_400, "100d"),
            ((2 * 365 + 10) * 86_400, "2y10d"),
            (9 * 365 * 86_400, "9y"),
        ];
        for (seconds, wanted) in cases {
            assert_eq!(human_duration(seconds), wanted, "{seconds}s");
        }
    }

    #[test]
    fn a_deployment_row_has_kubectls_columns() {
        let resource = crate::resources::builtins()
            .into_iter()
            .find(|r| r.plural == "deployments")
            .unwrap();
        let object = json!({
            "metadata": { "name": "web", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "replicas": 3, "template": { "spec": { "containers": [{ "name": "web", "image": "nginx" }] } } },
            "status": { "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2 },
        });
        let table = render(&resource, None, &[object], "", "7");
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], 3);
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}

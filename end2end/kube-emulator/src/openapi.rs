//! OpenAPI v3, as `kubectl explain` reads it: `/openapi/v3` lists a
//! document per group version, each with the schemas of its kinds (marked
//! with `x-kubernetes-group-version-kind`). The built-in kinds' schemas are
//! the ones the Kubernetes project publishes, as the k8s-openapi crate
//! carries them; a custom resource's is its CRD's `openAPIV3Schema`.

use k8s_openapi::api::{apps, batch, core, events, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// Changes when the documents would: kubectl caches them by this.
const HASH: &str = "gantry-emulator-1";

/// A kind whose schema is generated: its name in the document, its kind,
/// and how its schema is put into the generator.
struct Typed {
    kind: &'static str,
    name: fn() -> String,
    generate: fn(&mut SchemaGenerator) -> Schema,
}

macro_rules! typed {
    ($($ty:ty),* $(,)?) => {
        vec![$(Typed {
            kind: <$ty as k8s_openapi::Resource>::KIND,
            name: || <$ty as JsonSchema>::schema_name().into_owned(),
            generate: |generator| generator.subschema_for::<$ty>(),
        }),*]
    };
}

/// The built-in kinds of a group version that have a schema.
fn builtin(group: &str, version: &str) -> Vec<Typed> {
    match (group, version) {
        ("", "v1") => typed![
            core::v1::Namespace,
            core::v1::ConfigMap,
            core::v1::Secret,
            core::v1::Service,
            core::v1::ServiceAccount,
            core::v1::Pod,
            core::v1::Event,
            core::v1::Endpoints,
            core::v1::PersistentVolume,
            core::v1::PersistentVolumeClaim,
            core::v1::ReplicationController,
        ],
        ("apps", "v1") => typed![
            apps::v1::Deployment,
            apps::v1::StatefulSet,
            apps::v1::DaemonSet,
            apps::v1::ReplicaSet,
        ],
        ("batch", "v1") => typed![batch::v1::Job, batch::v1::CronJob],
        ("policy", "v1") => typed![policy::v1::PodDisruptionBudget],
        ("events.k8s.io", "v1") => typed![events::v1::Event],
        ("networking.k8s.io", "v1") => {
            typed![networking::v1::Ingress, networking::v1::NetworkPolicy]
        }
        ("rbac.authorization.k8s.io", "v1") => typed![
            rbac::v1::Role,
            rbac::v1::RoleBinding,
            rbac::v1::ClusterRole,
            rbac::v1::ClusterRoleBinding,
        ],
        ("apiextensions.k8s.io", "v1") => typed![apiextensions::CustomResourceDefinition],
        _ => Vec::new(),
    }
}

fn path_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn index(resources: &[Resource]) -> Value {
    let mut paths = Map::new();
    for resource in resources {
        let path = path_of(&resource.group, &resource.version);
        paths.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={HASH}") }),
        );
    }
    json!({ "paths": paths })
}

fn group_version_kind(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "version": version, "kind": kind }])
}

/// The document of one group version (`api/v1`, `apis/apps/v1`), with the
/// schemas of `resources` of it; `crds` are the custom resources' CRDs.
pub fn document(path: &str, resources: &[Resource], crds: &[Value]) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => (String::new(), version.to_string()),
        ["apis", group, version] => (group.to_string(), version.to_string()),
        _ => return None,
    };
    let served: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    let typed = builtin(&group, &version);
    for kind in &typed {
        (kind.generate)(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    for kind in &typed {
        if let Some(schema) = schemas.get_mut(&(kind.name)()) {
            schema["x-kubernetes-group-version-kind"] =
                group_version_kind(&group, &version, kind.kind);
        }
    }
    for resource in served
        .iter()
        .filter(|r| !typed.iter().any(|t| t.kind == r.kind))
    {
        let schema = crds
            .iter()
            .filter(|crd| {
                crd["spec"]["group"] == group && crd["spec"]["names"]["kind"] == resource.kind
            })
            .flat_map(|crd| {
                crd["spec"]["versions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|v| v["name"] == version)
            .map(|v| v["schema"]["openAPIV3Schema"].clone())
            .filter(Value::is_object);
        if let Some(mut schema) = schema {
            schema["x-kubernetes-group-version-kind"] =
                group_version_kind(&group, &version, &resource.kind);
            let reversed: Vec<&str> = group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{version}.{}", reversed.join("."), resource.kind),
                schema,
            );
        }
    }
    // kubectl finds a resource's kind through its paths: the GET of the
    // collection and of one object name the kind they serve.
    let mut paths = Map::new();
    for resource in &served {
        let schema = schemas.iter().find_map(|(name, schema)| {
            (schema["x-kubernetes-group-version-kind"][0]["kind"] == resource.kind.as_str())
                .then(|| name.clone())
        });
        let Some(schema) = schema else { continue };
        let base = if resource.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                path_of(&group, &version),
                resource.plural
            )
        } else {
            format!("/{}/{}", path_of(&group, &version), resource.plural)
        };
        let gvk = json!({ "group": group, "version": version, "kind": resource.kind });
        paths.insert(
            base.clone(),
            json!({ "get": { "x-kubernetes-group-version-kind": gvk } }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({ "get": {
                "x-kubernetes-group-version-kind": gvk,
                "responses": { "200": { "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } } },
            } }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_document_describes_deployments() {
        let resources = crate::resources::builtins();
        let apps = document("apis/apps/v1", &resources, &[]).unwrap();
        let schemas = &apps["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let spec = &schemas["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(spec["properties"]["replicas"]["type"], "integer");
        assert!(document("apis/nothing/v1", &resources, &[]).is_none());
        assert!(index(&resources)["paths"]["apis/apps/v1"]["serverRelativeURL"].is_string());
    }
}

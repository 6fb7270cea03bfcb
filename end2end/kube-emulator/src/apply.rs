//! Server-side apply with field ownership, as the API server does it for
//! what a deploy tool relies on: each manager owns the leaf fields it set;
//! an apply that drops a field its manager owned (and nobody else owns)
//! removes it; a field owned by another manager with a different value is a
//! conflict unless forced, and forcing takes it over. Lists are atomic (a
//! simplification of list-map merge keys, enough for whole-list ownership).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

/// The fields one manager owns, for one operation kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: FieldPath,
}

/// Fields nobody owns: identity and what the server maintains.
fn is_system(path: &[String]) -> bool {
    match path {
        [first] => first == "apiVersion" || first == "kind",
        [first, ..] if first == "status" => true,
        [meta, field, ..] if meta == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "selfLink"
        ),
        _ => false,
    }
}

/// Every leaf field of `value` (maps recurse, lists and scalars are leaves;
/// an empty map is a leaf so `labels: {}` can be owned).
pub fn leaf_paths(value: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    collect(value, &mut Vec::new(), &mut out);
    out.retain(|path| !is_system(path));
    out
}

fn collect(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

pub fn get_path<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for key in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else { return };
        current = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let Value::Object(map) = current {
        map.insert(last.clone(), leaf);
    }
}

/// Removes a leaf and the maps it leaves empty (never the top level nor
/// `metadata` itself).
fn remove_path(value: &mut Value, path: &[String]) {
    if path.is_empty() {
        return;
    }
    fn remove(value: &mut Value, path: &[String]) -> bool {
        let Some(map) = value.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            map.remove(&path[0]);
        } else if let Some(child) = map.get_mut(&path[0])
            && remove(child, &path[1..])
        {
            map.remove(&path[0]);
        }
        map.is_empty()
    }
    let _ = remove(value, path);
    if let Some(map) = value.as_object_mut() {
        map.entry("metadata").or_insert_with(|| json!({}));
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Applies `config` as `manager`. Returns the new object and ownership.
pub fn apply(
    live: Option<&Value>,
    owners: &[Ownership],
    manager: &str,
    config: &Value,
    force: bool,
    api_version: &str,
    now: &str,
) -> Result<(Value, Vec<Ownership>), Vec<Conflict>> {
    let applied = leaf_paths(config);
    let base = live.cloned().unwrap_or_else(|| json!({ "metadata": {} }));

    let mut conflicts = Vec::new();
    for owner in owners.iter().filter(|o| o.manager != manager) {
        for path in &applied {
            for owned in owner.fields.iter().filter(|owned| overlaps(owned, path)) {
                if get_path(&base, owned) != get_path(config, owned)
                    && get_path(&base, path) != get_path(config, path)
                {
                    conflicts.push(Conflict {
                        manager: owner.manager.clone(),
                        path: owned.clone(),
                    });
                }
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }

    let mut result = base;
    let previously: BTreeSet<FieldPath> = owners
        .iter()
        .filter(|o| o.manager == manager && o.operation == Operation::Apply)
        .flat_map(|o| o.fields.iter().cloned())
        .collect();
    for dropped in previously.difference(&applied) {
        let owned_elsewhere = owners
            .iter()
            .filter(|o| !(o.manager == manager && o.operation == Operation::Apply))
            .any(|o| o.fields.iter().any(|f| overlaps(f, dropped)));
        if !owned_elsewhere {
            remove_path(&mut result, dropped);
        }
    }
    for path in &applied {
        if let Some(leaf) = get_path(config, path) {
            set_path(&mut result, path, leaf.clone());
        }
    }
    for key in ["apiVersion", "kind"] {
        if let Some(value) = config.get(key) {
            result[key] = value.clone();
        }
    }

    let mut next: Vec<Ownership> = Vec::new();
    for owner in owners {
        if owner.manager == manager && owner.operation == Operation::Apply {
            continue;
        }
        let mut kept = owner.clone();
        // Fields taken over by force leave their old owner; fields set to
        // the same value stay shared.
        kept.fields.retain(|owned| {
            !applied.iter().any(|path| overlaps(owned, path))
                || get_path(live.unwrap_or(&Value::Null), owned) == get_path(config, owned)
        });
        if !kept.fields.is_empty() {
            next.push(kept);
        }
    }
    next.push(Ownership {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version: api_version.to_string(),
        time: now.to_string(),
        fields: applied,
    });
    Ok((result, next))
}

/// Ownership after a non-apply write (PUT or merge patch) by `manager`:
/// it owns what it changed, and previous owners lose those fields.
pub fn update(
    old: &Value,
    new: &Value,
    owners: &[Ownership],
    manager: &str,
    api_version: &str,
    now: &str,
) -> Vec<Ownership> {
    let before = leaf_paths(old);
    let after = leaf_paths(new);
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|path| get_path(old, path) != get_path(new, path))
        .cloned()
        .chain(before.difference(&after).cloned())
        .collect();
    let mut next: Vec<Ownership> = Vec::new();
    for owner in owners {
        let mut kept = owner.clone();
        kept.fields.retain(|owned| {
            !changed.iter().any(|path| overlaps(owned, path)) && get_path(new, owned).is_some()
        });
        if kept.manager == manager && kept.operation == Operation::Update {
            continue;
        }
        if !kept.fields.is_empty() {
            next.push(kept);
        }
    }
    let mut mine: BTreeSet<FieldPath> = owners
        .iter()
        .filter(|o| o.manager == manager && o.operation == Operation::Update)
        .flat_map(|o| o.fields.iter().cloned())
        .filter(|path| get_path(new, path).is_some())
        .collect();
    mine.extend(
        changed
            .into_iter()
            .filter(|path| get_path(new, path).is_some()),
    );
    if !mine.is_empty() {
        next.push(Ownership {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: mine,
        });
    }
    next
}

/// `metadata.managedFields` in the API's FieldsV1 shape.
pub fn managed_fields(owners: &[Ownership]) -> Value {
    Value::Array(
        owners
            .iter()
            .map(|owner| {
                let mut fields = json!({});
                for path in &owner.fields {
                    let keys: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
                    set_path(&mut fields, &keys, json!({}));
                }
                json!({
                    "manager": owner.manager,
                    "operation": match owner.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                    "apiVersion": owner.api_version,
                    "time": owner.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        text.split('.').map(str::to_string).collect()
    }

    #[test]
    fn a_field_dropped_by_its_manager_is_removed_and_others_stay() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
        let (live, owners) = apply(None, &[], "gantry", &first, false, "v1", "t").unwrap();
        // Someone else adds a field.
        let mut edited = live.clone();
        edited["data"]["z"] = json!("3");
        let owners = update(&live, &edited, &owners, "kubectl-edit", "v1", "t");
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}});
        let (live, owners) =
            apply(Some(&edited), &owners, "gantry", &second, false, "v1", "t").unwrap();
        assert_eq!(live["data"], json!({"x": "1", "z": "3"}));
        assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
        let gantry = owners.iter().find(|o| o.manager == "gantry").unwrap();
        assert!(gantry.fields.contains(&path("data.x")));
        assert!(!gantry.fields.contains(&path("data.y")));
    }

    #[test]
    fn a_changed_field_of_another_manager_conflicts_unless_forced() {
        let config = json!({"spec": {"replicas": 2}, "metadata": {"name": "d"}});
        let (live, owners) = apply(None, &[], "gantry", &config, false, "apps/v1", "t").unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let owners = update(&live, &scaled, &owners, "hpa", "apps/v1", "t");
        let conflicts = apply(
            Some(&scaled),
            &owners,
            "gantry",
            &config,
            false,
            "apps/v1",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            conflicts,
            vec![Conflict {
                manager: "hpa".into(),
                path: path("spec.replicas")
            }]
        );
        let (live, owners) = apply(
            Some(&scaled),
            &owners,
            "gantry",
            &config,
            true,
            "apps/v1",
            "t",
        )
        .unwrap();
        assert_eq!(live["spec"]["replicas"], json!(2));
        assert!(
            owners.iter().all(|o| o.manager != "hpa"),
            "forcing takes the field over"
        );
    }

    #[test]
    fn managed_fields_use_the_fields_v1_shape() {
        let owners = vec![Ownership {
            manager: "gantry".into(),
            operation: Operation::Apply,
            api_version: "v1".into(),
            time: "t".into(),
            fields: [path("metadata.labels.app"), path("data.x")]
                .into_iter()
                .collect(),
        }];
        let managed = managed_fields(&owners);
        assert_eq!(
            managed[0]["fieldsV1"],
            json!({"f:data": {"f:x": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
    }
}

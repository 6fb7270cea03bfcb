//! The emulated cluster's state: resource types, objects with their field
//! ownership, the resource version counter and the watch event stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::apply::{self, Ownership};
use crate::resources::{self, Resource};
use crate::{Faults, Options, RolloutMode};

/// An error as the API server reports it (a `Status` object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", resource.qualified()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: message.into(),
        }
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub object: Value,
    pub owners: Vec<Ownership>,
    /// When the spec last changed (the rollout controller's clock).
    pub spec_changed: Instant,
}

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
}

struct Inner {
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Entry>,
    version: u64,
    /// The latest events, as a real apiserver's watch cache keeps them: a
    /// watch from a resourceVersion gets every event after it, also those
    /// between the client's list and its watch request.
    history: std::collections::VecDeque<WatchEvent>,
    /// The resourceVersion of the newest event no longer kept (0: none).
    forgotten: u64,
}

/// Events kept for watches that start from an earlier resourceVersion.
const HISTORY: usize = 10_000;

/// A watch from a resourceVersion older than the events kept: a real
/// server answers 410 Gone and the client lists again.
#[derive(Debug)]
pub struct TooOld;

fn version_of(event: &WatchEvent) -> u64 {
    event.object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whose log: (namespace, pod, container).
type LogKey = (String, String, String);

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<WatchEvent>,
    faults: Mutex<Faults>,
    /// Every request answered so far (benchmarks count round trips).
    requests: std::sync::atomic::AtomicU64,
    rollout: Mutex<RolloutMode>,
    denied: Mutex<Vec<crate::Denied>>,
    /// Container output by (namespace, pod, container).
    /// What each container printed: (nanoseconds since the epoch, line).
    logs: Mutex<BTreeMap<LogKey, Vec<(i128, String)>>>,
    /// Pods the node's kubelet evicts (node pressure): their message.
    evictions: Mutex<BTreeMap<(String, String), String>>,
    pub options: Options,
}

/// What a write did.
pub struct Written {
    pub object: Value,
    pub created: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// RFC 3339 with nanoseconds, as a kubelet stamps log lines.
pub fn rfc3339_nanos(nanos: i128) -> String {
    let seconds = rfc3339(nanos.div_euclid(1_000_000_000) as i64);
    let fraction = nanos.rem_euclid(1_000_000_000);
    format!("{}.{fraction:09}Z", seconds.trim_end_matches('Z'))
}

/// Reads an RFC 3339 time (with or without a fraction) into nanoseconds.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let seconds = i128::from(parse_rfc3339(text)?);
    let fraction = text
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|rest| rest.trim_end_matches('Z'))
        .map(|digits| format!("{digits:0<9}"))
        .and_then(|digits| digits.get(..9).and_then(|d| d.parse::<i128>().ok()))
        .unwrap_or(0);
    Some(seconds * 1_000_000_000 + fraction)
}

/// RFC 3339, UTC, seconds — as the API server writes timestamps.
pub fn now_rfc3339() -> String {
    rfc3339(now_unix())
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days from the civil date (the inverse of `rfc3339` below).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// RFC 3339, UTC, seconds, of a time in seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The parts of an object whose change bumps `generation`.
fn spec_of(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The live object's status on `object`, or none when it has none: a
/// kind without a status never gains `status: null`.
fn keep_status(object: &mut Value, live: &Value) {
    match live.get("status") {
        Some(status) if !status.is_null() => object["status"] = status.clone(),
        _ => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
    }
}

/// A write that carries a `resourceVersion` other than the live one is
/// refused as a real API server refuses it (optimistic concurrency).
fn precondition(
    resource: &Resource,
    name: &str,
    written: &Value,
    live: &Value,
) -> Result<(), ApiError> {
    let given = written["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("");
    let now = live["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if given.is_empty() || given == now {
        Ok(())
    } else {
        Err(ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.qualified()
            ),
        })
    }
}

/// The object as stored, without what every write stamps anew: what a
/// write must change for it to be a change at all.
fn content_of(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    copy
}

/// The field owners without their timestamps.
fn ownership_of(owners: &[Ownership]) -> Vec<(&str, &str, &BTreeSet<apply::FieldPath>)> {
    owners
        .iter()
        .map(|o| (o.manager.as_str(), o.api_version.as_str(), &o.fields))
        .collect()
}

impl Store {
    pub fn new(options: Options) -> Store {
        let (events, _) = broadcast::channel(4096);
        let rollout = options.rollout;
        let mut inner = Inner {
            history: std::collections::VecDeque::new(),
            forgotten: 0,
            resources: resources::builtins(),
            objects: BTreeMap::new(),
            version: 1,
        };
        for name in ["default", "kube-system", "kube-public"] {
            inner.version += 1;
            let key = Key {
                group: String::new(),
                plural: "namespaces".into(),
                namespace: String::new(),
                name: name.into(),
            };
            let object = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": name, "uid": format!("uid-{}", inner.version), "resourceVersion": inner.version.to_string(),
                              "creationTimestamp": now_rfc3339(), "generation": 1, "labels": { "kubernetes.io/metadata.name": name } },
                "status": { "phase": "Active" },
            });
            inner.objects.insert(
                key,
                Entry {
                    object,
                    owners: Vec::new(),
                    spec_changed: Instant::now(),
                },
            );
        }
        Store {
            inner: Mutex::new(inner),
            events,
            faults: Mutex::default(),
            requests: std::sync::atomic::AtomicU64::new(0),
            rollout: Mutex::new(rollout),
            denied: Mutex::new(options.denied.clone()),
            logs: Mutex::default(),
            evictions: Mutex::default(),
            options,
        }
    }

    /// The node evicts the pod under resource pressure, as a kubelet does:
    /// its containers are killed and its status says `Failed`, `Evicted`,
    /// with `message` (tests; the kubelet does the rest).
    pub fn evict(&self, namespace: &str, name: &str, message: &str) {
        lock(&self.evictions).insert((namespace.into(), name.into()), message.into());
        let key = Key {
            group: String::new(),
            plural: "pods".into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Some(pod) = self.object("", "pods", namespace, name) {
            self.set_status(&key, evicted(pod["status"].clone(), message));
        }
    }

    /// Why the pod is evicted, if it is.
    pub fn eviction(&self, namespace: &str, name: &str) -> Option<String> {
        lock(&self.evictions)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// How many requests the server has received.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one request against `fail_next`; true when it must fail.
    pub fn take_failure(&self) -> bool {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut faults = lock(&self.faults);
        if faults.fail_next > 0 {
            faults.fail_next -= 1;
            true
        } else {
            false
        }
    }

    pub fn rollout(&self) -> RolloutMode {
        *lock(&self.rollout)
    }

    pub fn set_rollout(&self, mode: RolloutMode) {
        *lock(&self.rollout) = mode;
    }

    pub fn denied(&self) -> Vec<crate::Denied> {
        lock(&self.denied).clone()
    }

    pub fn set_denied(&self, denied: Vec<crate::Denied>) {
        *lock(&self.denied) = denied;
    }

    /// The events after resourceVersion `since` that were kept, and the
    /// ones to come — taken together, so none falls between the two.
    pub fn watch_from(
        &self,
        since: u64,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), TooOld> {
        let inner = lock(&self.inner);
        if since < inner.forgotten {
            return Err(TooOld);
        }
        let kept = inner
            .history
            .iter()
            .filter(|event| version_of(event) > since)
            .cloned()
            .collect();
        Ok((kept, self.events.subscribe()))
    }

    /// Sends an event to the watches, and keeps it for later ones; called
    /// with the store locked, so events are kept in the order sent.
    fn publish(&self, inner: &mut Inner, event: WatchEvent) {
        if inner.history.len() == HISTORY
            && let Some(oldest) = inner.history.pop_front()
        {
            inner.forgotten = version_of(&oldest);
        }
        inner.history.push_back(event.clone());
        let _ = self.events.send(event);
    }

    pub fn resource_version(&self) -> u64 {
        lock(&self.inner).version
    }

    pub fn resources(&self) -> Vec<Resource> {
        lock(&self.inner).resources.clone()
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        lock(&self.inner)
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// A read of one object, as the test sees it (no HTTP).
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Key {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        lock(&self.inner)
            .objects
            .get(&key)
            .map(|e| e.object.clone())
    }

    /// Every object of a type, across namespaces (tests and the controller).
    pub fn objects_of(&self, group: &str, plural: &str) -> Vec<(Key, Value)> {
        lock(&self.inner)
            .objects
            .iter()
            .filter(|(k, _)| k.group == group && k.plural == plural)
            .map(|(k, e)| (k.clone(), e.object.clone()))
            .collect()
    }

    pub fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = self.key(resource, namespace, name);
        lock(&self.inner)
            .objects
            .get(&key)
            .map(|e| e.object.clone())
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    pub fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        labels: &str,
        fields: &str,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let labels = Selector::parse(labels)?;
        let fields = Selector::parse(fields)?;
        let inner = lock(&self.inner);
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.group == resource.group && k.plural == resource.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| ns.is_empty() || k.namespace == ns))
            .map(|(_, e)| &e.object)
            .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
            .cloned()
            .collect();
        Ok((items, inner.version))
    }

    fn key(&self, resource: &Resource, namespace: &str, name: &str) -> Key {
        Key {
            group: resource.group.clone(),
            plural: resource.plural.clone(),
            namespace: if resource.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn check_identity(
        &self,
        inner: &Inner,
        resource: &Resource,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(ApiError::invalid(format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                resource.kind
            )));
        }
        if let Some(kind) = body["kind"].as_str()
            && kind != resource.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind {kind} does not match the resource {}",
                resource.qualified()
            )));
        }
        if let Some(body_name) = body["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if resource.namespaced {
            let ns_key = Key {
                group: String::new(),
                plural: "namespaces".into(),
                namespace: String::new(),
                name: namespace.into(),
            };
            match inner.objects.get(&ns_key) {
                None => {
                    return Err(ApiError {
                        code: 404,
                        reason: "NotFound",
                        message: format!("namespaces \"{namespace}\" not found"),
                    });
                }
                Some(ns) if ns.object["metadata"]["deletionTimestamp"].is_string() => {
                    return Err(ApiError {
                        code: 403,
                        reason: "Forbidden",
                        message: format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                            resource.qualified()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Stamps server fields and stores (unless `dry_run`); emits the event.
    fn commit(
        &self,
        inner: &mut Inner,
        resource: &Resource,
        key: Key,
        mut object: Value,
        owners: Vec<Ownership>,
        dry_run: bool,
    ) -> Written {
        let previous = inner.objects.get(&key).cloned();
        let created = previous.is_none();
        let version_before = inner.version;
        let spec_changed = previous
            .as_ref()
            .is_none_or(|p| spec_of(&p.object) != spec_of(&object));
        let version = inner.version + 1;
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(key.name);
        if resource.namespaced {
            metadata["namespace"] = json!(key.namespace);
        }
        match &previous {
            Some(previous) => {
                let old = &previous.object["metadata"];
                metadata["uid"] = old["uid"].clone();
                metadata["creationTimestamp"] = old["creationTimestamp"].clone();
                let generation = old["generation"].as_i64().unwrap_or(1);
                metadata["generation"] = json!(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
                if old["deletionTimestamp"].is_string() {
                    metadata["deletionTimestamp"] = old["deletionTimestamp"].clone();
                }
                if object.get("status").is_none() && previous.object.get("status").is_some() {
                    object["status"] = previous.object["status"].clone();
                }
            }
            None => {
                metadata["uid"] = json!(format!("{:08x}-0000-4000-8000-{:012x}", version, version));
                metadata["creationTimestamp"] = json!(now_rfc3339());
                metadata["generation"] = json!(1);
            }
        }
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        object["metadata"]["managedFields"] = apply::managed_fields(&owners);
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        if resource.plural == "namespaces" && object["status"].is_null() {
            object["status"] = json!({ "phase": "Active" });
        }
        // The real API server accepts a CRD's names and establishes it as
        // it stores it.
        if resource.plural == "customresourcedefinitions" && object["status"].is_null() {
            object["status"] = json!({
                "acceptedNames": object["spec"]["names"].clone(),
                "conditions": [
                    { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts" },
                    { "type": "Established", "status": "True", "reason": "InitialNamesAccepted" }
                ]
            });
        }
        // A write that changes nothing keeps the object — and its
        // resourceVersion — as it was, and tells no watch.
        if let Some(previous) = &previous
            && content_of(&previous.object) == content_of(&object)
            && ownership_of(&previous.owners) == ownership_of(&owners)
        {
            return Written {
                object: previous.object.clone(),
                created: false,
            };
        }
        if dry_run {
            // Nothing is stored, so no version is given out: an update
            // answers with the one it has, a create with none.
            match &previous {
                Some(previous) => {
                    object["metadata"]["resourceVersion"] =
                        previous.object["metadata"]["resourceVersion"].clone();
                }
                None => {
                    if let Some(metadata) = object["metadata"].as_object_mut() {
                        metadata.remove("resourceVersion");
                    }
                }
            }
            debug_assert_eq!(inner.version, version_before);
            return Written { object, created };
        }
        inner.version = version;
        let changed_at = if spec_changed {
            Instant::now()
        } else {
            previous
                .as_ref()
                .map_or_else(Instant::now, |p| p.spec_changed)
        };
        inner.objects.insert(
            key.clone(),
            Entry {
                object: object.clone(),
                owners,
                spec_changed: changed_at,
            },
        );
        if resource.group == "apiextensions.k8s.io"
            && resource.plural == "customresourcedefinitions"
        {
            for custom in resources::from_crd(&object) {
                inner.resources.retain(|r| {
                    !(r.group == custom.group
                        && r.version == custom.version
                        && r.plural == custom.plural)
                });
                inner.resources.push(custom);
            }
        }
        self.publish(
            inner,
            WatchEvent {
                kind: if created { "ADDED" } else { "MODIFIED" },
                key,
                object: object.clone(),
            },
        );
        Written { object, created }
    }

    /// Server-side apply (`application/apply-patch+yaml`).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        config: &Value,
        manager: &str,
        force: bool,
        dry_run: bool,
        status: bool,
    ) -> Result<Written, ApiError> {
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut inner = lock(&self.inner);
        self.check_identity(&inner, resource, namespace, name, config)?;
        let key = self.key(resource, namespace, name);
        let live = inner.objects.get(&key).cloned();
        if status && live.is_none() {
            return Err(ApiError::not_found(resource, name));
        }
        // The main resource ignores `status`; `/status` only takes `status`.
        let mut config = config.clone();
        if status {
            config = json!({ "apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": { "name": name }, "status": config["status"].clone() });
        } else if let Some(map) = config.as_object_mut() {
            map.remove("status");
        }
        let owners = live.as_ref().map(|e| e.owners.clone()).unwrap_or_default();
        let (mut object, owners) = if status {
            let mut object = live.as_ref().map(|e| e.object.clone()).unwrap_or_default();
            object["status"] = config["status"].clone();
            (object, owners)
        } else {
            apply::apply(
                live.as_ref().map(|e| &e.object),
                &owners,
                manager,
                &config,
                force,
                &resource.api_version(),
                &now_rfc3339(),
            )
            .map_err(|conflicts| {
                let fields: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("conflict with \"{}\": .{}", c.manager, c.path.join(".")))
                    .collect();
                ApiError {
                    code: 409,
                    reason: "Conflict",
                    message: format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        fields.join(", ")
                    ),
                }
            })?
        };
        if let Some(previous) = &live {
            precondition(resource, name, &config, &previous.object)?;
            if !status {
                keep_status(&mut object, &previous.object);
            }
        }
        Ok(self.commit(&mut inner, resource, key, object, owners, dry_run))
    }

    /// A JSON merge patch (RFC 7386; strategic merge patches are treated
    /// the same, which is right for maps and scalars).
    #[allow(clippy::too_many_arguments)]
    pub fn merge_patch(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        patch: &Value,
        manager: &str,
        dry_run: bool,
        status: bool,
    ) -> Result<Written, ApiError> {
        let mut inner = lock(&self.inner);
        let key = self.key(resource, namespace, name);
        let live = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let mut object = live.object.clone();
        match (patch, status) {
            // A JSON patch (RFC 6902) is a list of operations.
            (Value::Array(operations), _) => {
                crate::json_patch::apply(&mut object, operations)?;
                if !status {
                    keep_status(&mut object, &live.object);
                }
            }
            (_, true) => merge(&mut object["status"], &patch["status"]),
            (_, false) => {
                merge(&mut object, patch);
                keep_status(&mut object, &live.object);
            }
        }
        // A patch that names a resourceVersion is a precondition.
        precondition(resource, name, &object, &live.object)?;
        let owners = apply::update(
            &live.object,
            &object,
            &live.owners,
            manager,
            &resource.api_version(),
            &now_rfc3339(),
        );
        Ok(self.commit(&mut inner, resource, key, object, owners, dry_run))
    }

    /// PUT: replaces the object (keeping its status).
    pub fn replace(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let mut inner = lock(&self.inner);
        self.check_identity(&inner, resource, namespace, name, body)?;
        let key = self.key(resource, namespace, name);
        let live = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        precondition(resource, name, body, &live.object)?;
        let mut object = body.clone();
        keep_status(&mut object, &live.object);
        let owners = apply::update(
            &live.object,
            &object,
            &live.owners,
            manager,
            &resource.api_version(),
            &now_rfc3339(),
        );
        Ok(self.commit(&mut inner, resource, key, object, owners, dry_run))
    }

    /// POST: creates, or 409 when it exists.
    pub fn create(
        &self,
        resource: &Resource,
        namespace: &str,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut inner = lock(&self.inner);
        self.check_identity(&inner, resource, namespace, &name, body)?;
        let key = self.key(resource, namespace, &name);
        if inner.objects.contains_key(&key) {
            return Err(ApiError {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", resource.qualified()),
            });
        }
        let owners = apply::update(
            &json!({}),
            body,
            &[],
            manager,
            &resource.api_version(),
            &now_rfc3339(),
        );
        Ok(self.commit(&mut inner, resource, key, body.clone(), owners, dry_run))
    }

    /// Deletes one object. A namespace turns `Terminating` and goes, with
    /// everything in it, after `namespace_termination`.
    pub fn delete(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = lock(&self.inner);
        let key = self.key(resource, namespace, name);
        let entry = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if dry_run {
            return Ok(entry.object);
        }
        if resource.group.is_empty() && resource.plural == "namespaces" {
            if entry.object["metadata"]["deletionTimestamp"].is_string() {
                return Ok(entry.object);
            }
            let mut object = entry.object.clone();
            object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            object["status"] = json!({ "phase": "Terminating" });
            inner.version += 1;
            object["metadata"]["resourceVersion"] = json!(inner.version.to_string());
            // The termination clock starts now.
            inner.objects.insert(
                key.clone(),
                Entry {
                    object: object.clone(),
                    owners: entry.owners,
                    spec_changed: Instant::now(),
                },
            );
            self.publish(
                &mut inner,
                WatchEvent {
                    kind: "MODIFIED",
                    key,
                    object: object.clone(),
                },
            );
            return Ok(object);
        }
        inner.objects.remove(&key);
        inner.version += 1;
        let mut object = entry.object;
        object["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        self.publish(
            &mut inner,
            WatchEvent {
                kind: "DELETED",
                key,
                object: object.clone(),
            },
        );
        Ok(object)
    }

    /// Finishes namespaces whose termination time has come.
    pub fn finish_terminating(&self) {
        let mut inner = lock(&self.inner);
        let grace = self.options.namespace_termination;
        let now = Instant::now();
        let due: Vec<Key> = inner
            .objects
            .iter()
            .filter(|(k, e)| {
                k.group.is_empty()
                    && k.plural == "namespaces"
                    && e.object["metadata"]["deletionTimestamp"].is_string()
                    && now.duration_since(e.spec_changed) >= grace
            })
            .map(|(k, _)| k.clone())
            .collect();
        for ns in due {
            let inside: Vec<Key> = inner
                .objects
                .keys()
                .filter(|k| !k.namespace.is_empty() && k.namespace == ns.name)
                .cloned()
                .collect();
            for key in inside.into_iter().chain([ns]) {
                if let Some(entry) = inner.objects.remove(&key) {
                    // A deletion is a new version: a watch from the
                    // delete's resourceVersion (`kubectl delete ns --wait`)
                    // must see it.
                    inner.version += 1;
                    let mut object = entry.object;
                    object["metadata"]["resourceVersion"] = json!(inner.version.to_string());
                    self.publish(
                        &mut inner,
                        WatchEvent {
                            kind: "DELETED",
                            key,
                            object,
                        },
                    );
                }
            }
        }
    }

    /// Deletes a pod as a real API server does when a kubelet runs it: a
    /// pod still running is marked (`deletionTimestamp`,
    /// `deletionGracePeriodSeconds`) and stays until its kubelet has
    /// stopped its containers, TERM first and KILL after the grace period;
    /// a grace of 0, or a pod that has ended or never started, goes at once.
    /// `grace` is the request's, else the pod's
    /// `terminationGracePeriodSeconds`, else 30.
    pub fn delete_pod(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let live = self.get(resource, namespace, name)?;
        let grace = grace
            .or_else(|| live["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0);
        // Only containers that run have something to stop: a pod whose
        // containers all wait (an image that cannot be pulled) goes at once.
        let running = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .any(|field| {
                live["status"][*field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["state"]["running"].is_object())
            });
        if dry_run || grace == 0 || !running || self.options.kubelet.is_none() {
            return self.delete(resource, namespace, name, dry_run);
        }
        if live["metadata"]["deletionTimestamp"].is_string() {
            return Ok(live);
        }
        let mut inner = lock(&self.inner);
        let key = self.key(resource, namespace, name);
        let Some(entry) = inner.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(resource, name));
        };
        let mut object = entry.object;
        object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        inner.version += 1;
        object["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        inner.objects.insert(
            key.clone(),
            Entry {
                object: object.clone(),
                owners: entry.owners,
                spec_changed: entry.spec_changed,
            },
        );
        self.publish(
            &mut inner,
            WatchEvent {
                kind: "MODIFIED",
                key,
                object: object.clone(),
            },
        );
        Ok(object)
    }

    pub fn delete_collection(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        labels: &str,
        dry_run: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let (items, _) = self.list(resource, namespace, labels, "")?;
        let mut deleted = Vec::new();
        for item in items {
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            deleted.push(self.delete(resource, &ns, &name, dry_run)?);
        }
        Ok(deleted)
    }

    /// A controller's write of a whole object (no field ownership of its
    /// own): stored only if the object is still at `expected`'s
    /// resourceVersion (`None`: only if it does not exist), so a client's
    /// write in between is never undone. True when stored.
    pub fn put_if(&self, group: &str, plural: &str, object: Value, expected: Option<&str>) -> bool {
        let mut inner = lock(&self.inner);
        let Some(resource) = inner
            .resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
        else {
            return false;
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let key = self.key(&resource, namespace, name);
        let current = inner.objects.get(&key);
        let now = current.and_then(|e| e.object["metadata"]["resourceVersion"].as_str());
        if now != expected {
            return false;
        }
        let owners = current.map(|e| e.owners.clone()).unwrap_or_default();
        self.commit(&mut inner, &resource, key, object, owners, false);
        true
    }

    /// Deletes an object as the garbage collector does.
    pub fn remove(&self, key: &Key) {
        let resource = lock(&self.inner)
            .resources
            .iter()
            .find(|r| r.group == key.group && r.plural == key.plural)
            .cloned();
        if let Some(resource) = resource {
            let _ = self.delete(&resource, &key.namespace, &key.name, false);
        }
    }

    /// Appends to what a pod's container has printed (`kubectl logs`),
    /// each line stamped with when it came (later lines, later stamps).
    pub fn write_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        let mut logs = lock(&self.logs);
        let lines = logs
            .entry((namespace.into(), pod.into(), container.into()))
            .or_default();
        for line in text.split_inclusive('\n') {
            let last = lines.last().map_or(0, |(at, _)| *at);
            lines.push((now_nanos().max(last + 1), line.to_string()));
        }
    }

    /// What a pod's container has printed so far.
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        self.log_lines(namespace, pod, container)
            .into_iter()
            .map(|(_, line)| line)
            .collect()
    }

    /// The same, line by line with when each came (nanoseconds since the
    /// epoch).
    pub fn log_lines(&self, namespace: &str, pod: &str, container: &str) -> Vec<(i128, String)> {
        lock(&self.logs)
            .get(&(namespace.into(), pod.into(), container.into()))
            .cloned()
            .unwrap_or_default()
    }

    /// Sets an object's status as a controller would (no ownership).
    pub fn set_status(&self, key: &Key, status: Value) {
        let mut inner = lock(&self.inner);
        let Some(entry) = inner.objects.get(key).cloned() else {
            return;
        };
        if entry.object["status"] == status {
            return;
        }
        inner.version += 1;
        let mut object = entry.object;
        object["status"] = status;
        object["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        inner.objects.insert(
            key.clone(),
            Entry {
                object: object.clone(),
                ..entry
            },
        );
        self.publish(
            &mut inner,
            WatchEvent {
                kind: "MODIFIED",
                key: key.clone(),
                object,
            },
        );
    }

    /// Workloads the rollout controller looks after: key, object, and how
    /// long ago their spec changed.
    pub fn workloads(&self) -> Vec<(Key, Value, Duration)> {
        let inner = lock(&self.inner);
        let now = Instant::now();
        inner
            .objects
            .iter()
            .filter(|(k, _)| {
                matches!(
                    (k.group.as_str(), k.plural.as_str()),
                    ("apps", "deployments" | "statefulsets" | "daemonsets") | ("batch", "jobs")
                )
            })
            .map(|(k, e)| {
                (
                    k.clone(),
                    e.object.clone(),
                    now.duration_since(e.spec_changed),
                )
            })
            .collect()
    }
}

/// RFC 7386 merge.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(changes) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(map) = target {
                for (key, value) in changes {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A label or field selector: comma-separated requirements, all of which
/// must hold (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`).
pub struct Selector {
    requirements: Vec<Requirement>,
}

enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            // Split on the next comma outside parentheses.
            let mut depth = 0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let part = rest[..end].trim();
            rest = rest.get(end + 1..).unwrap_or("").trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some((key, values)) = part.split_once(" notin ") {
                Requirement::NotIn(key.trim().into(), set(values)?)
            } else if let Some((key, values)) = part.split_once(" in ") {
                Requirement::In(key.trim().into(), set(values)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                Requirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(k, v) => value_of(k).as_deref() == Some(v.as_str()),
                Requirement::NotEquals(k, v) => value_of(k).as_deref() != Some(v.as_str()),
                Requirement::Exists(k) => value_of(k).is_some(),
                Requirement::NotExists(k) => value_of(k).is_none(),
                Requirement::In(k, vs) => value_of(k).is_some_and(|v| vs.contains(&v)),
                Requirement::NotIn(k, vs) => value_of(k).is_none_or(|v| !vs.contains(&v)),
            })
    }

    pub fn matches_labels(&self, object: &Value) -> bool {
        self.matches(|key| {
            object["metadata"]["labels"][key]
                .as_str()
                .map(str::to_string)
        })
    }

    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|key| {
            let value = key
                .split('.')
                .try_fold(object, |current, part| current.get(part))?;
            value.as_str().map(str::to_string)
        })
    }
}

fn set(text: &str) -> Result<Vec<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: values must be in parentheses: {text}"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// A pod's status once its node evicted it.
pub fn evicted(mut status: Value, message: &str) -> Value {
    status["phase"] = json!("Failed");
    status["reason"] = json!("Evicted");
    status["message"] = json!(message);
    status
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_read_back_as_written() {
        for secs in [0, 951_782_400, 1_798_761_599, 1_800_000_000] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(secs)), Some(secs));
        }
        assert_eq!(
            super::parse_rfc3339("2026-12-01T00:00:00.000000Z"),
            Some(1_796_083_200)
        );
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }
}

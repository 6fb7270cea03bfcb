//! The emulator as the real `kube` client sees it (kubectl and helm:
//! `conformance.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use kube::{Client, Config};
use kube_emulator::{Emulator, Faults, Options, RolloutMode};
use serde_json::json;

async fn client(emulator: &Emulator) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = Config::new(emulator.url().parse().unwrap());
    Client::try_from(config).unwrap()
}

fn deployments(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn deployment(name: &str, labels: serde_json::Value, replicas: i64) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": labels },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } }, "spec": { "containers": [{ "name": "web", "image": "nginx:1" }] } } }
    })
}

#[tokio::test]
async fn discovery_finds_the_builtin_kinds_with_short_names() {
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.33.0-gantry-emulator");
    let discovery = Discovery::new(client).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .expect("deployments");
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let (ns, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .expect("namespaces");
    assert_eq!(ns.plural, "namespaces");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_removes_dropped_fields() {
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let api = deployments(&client, "default");
    let params = PatchParams::apply("gantry").force();
    let first = api
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", json!({"app": "web", "tier": "front"}), 2)),
        )
        .await
        .unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    let rv1: u64 = first.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(
        first.metadata.managed_fields.as_ref().unwrap()[0]
            .manager
            .as_deref(),
        Some("gantry")
    );

    let second = api
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", json!({"app": "web"}), 3)),
        )
        .await
        .unwrap();
    assert_eq!(second.metadata.generation, Some(2), "spec changed");
    assert!(
        second
            .metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv1
    );
    let labels = second.metadata.labels.unwrap();
    assert!(
        !labels.contains_key("tier"),
        "a label dropped from the apply is removed"
    );
    assert_eq!(second.data["spec"]["replicas"], json!(3));

    // Someone else's field survives our apply; our dropped one does not.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    api.patch(
        "web",
        &edit,
        &Patch::Merge(json!({"metadata": {"annotations": {"owner": "ops"}}})),
    )
    .await
    .unwrap();
    let third = api
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", json!({"app": "web"}), 3)),
        )
        .await
        .unwrap();
    assert_eq!(
        third
            .metadata
            .annotations
            .unwrap()
            .get("owner")
            .map(String::as_str),
        Some("ops")
    );
    assert_eq!(
        third.metadata.generation,
        Some(2),
        "nothing in the spec changed"
    );

    // A conflicting change without force is refused with 409.
    api.patch(
        "web",
        &edit,
        &Patch::Merge(json!({"spec": {"replicas": 9}})),
    )
    .await
    .unwrap();
    let error = api
        .patch(
            "web",
            &PatchParams::apply("gantry"),
            &Patch::Apply(deployment("web", json!({"app": "web"}), 3)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 409),
        "{error}"
    );

    // Dry-run shows the result without storing it.
    let dry = PatchParams::apply("gantry").force().dry_run();
    let preview = api
        .patch(
            "web",
            &dry,
            &Patch::Apply(deployment("web", json!({"app": "web"}), 4)),
        )
        .await
        .unwrap();
    assert_eq!(preview.data["spec"]["replicas"], json!(4));
    assert_eq!(
        api.get("web").await.unwrap().data["spec"]["replicas"],
        json!(9)
    );
}

#[tokio::test]
async fn selectors_watch_and_the_rollout_controller() {
    let emulator = Emulator::start(Options {
        rollout: RolloutMode::After(Duration::from_millis(150)),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = client(&emulator).await;
    let api = deployments(&client, "default");
    let mut stream = Box::pin(
        api.watch(&WatchParams::default().labels("app=web"), "0")
            .await
            .unwrap(),
    );
    let params = PatchParams::apply("gantry").force();
    api.patch(
        "web",
        &params,
        &Patch::Apply(deployment("web", json!({"app": "web"}), 2)),
    )
    .await
    .unwrap();
    api.patch(
        "other",
        &params,
        &Patch::Apply(deployment("other", json!({"app": "other"}), 1)),
    )
    .await
    .unwrap();
    let listed = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=other"))
        .await
        .unwrap();
    assert_eq!(by_field.items[0].metadata.name.as_deref(), Some("other"));

    use futures_util::StreamExt;
    let mut available = false;
    while let Some(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
    {
        match event {
            WatchEvent::Added(object) => assert_eq!(object.metadata.name.as_deref(), Some("web")),
            WatchEvent::Modified(object)
                if object.data["status"]["availableReplicas"] == json!(2) =>
            {
                available = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        available,
        "the rollout controller made the deployment available"
    );
}

// A watch from the resourceVersion a list returned gets what changed
// between that list and the watch request, as from a real apiserver's
// watch cache (kubectl's `rollout status` lists, then watches; missing
// the change in between, it waited out its timeout under load).
#[tokio::test]
async fn a_watch_from_a_resource_version_gets_what_changed_since() {
    let emulator = Emulator::start(Options {
        rollout: RolloutMode::Never,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = client(&emulator).await;
    let api = deployments(&client, "default");
    let params = PatchParams::apply("gantry").force();
    api.patch(
        "web",
        &params,
        &Patch::Apply(deployment("web", json!({"app": "web"}), 1)),
    )
    .await
    .unwrap();
    let listed = api.list(&ListParams::default()).await.unwrap();
    let version = listed.metadata.resource_version.clone().unwrap();
    // Changed after the list, before the watch.
    api.patch(
        "web",
        &params,
        &Patch::Apply(deployment("web", json!({"app": "web"}), 3)),
    )
    .await
    .unwrap();
    let mut stream = Box::pin(api.watch(&WatchParams::default(), &version).await.unwrap());
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event, not a wait")
        .unwrap()
        .unwrap();
    let WatchEvent::Modified(object) = first else {
        panic!("wanted the change made after the list: {first:?}");
    };
    assert_eq!(object.data["spec"]["replicas"], json!(3));
    assert!(
        object
            .metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > version.parse::<u64>().unwrap()
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let namespaces: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        ),
    );
    let params = PatchParams::apply("gantry").force();
    namespaces
        .patch(
            "preview",
            &params,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "preview"}}),
            ),
        )
        .await
        .unwrap();
    let api = deployments(&client, "preview");
    api.patch(
        "web",
        &params,
        &Patch::Apply(deployment("web", json!({"app": "web"}), 1)),
    )
    .await
    .unwrap();
    // Objects need their namespace.
    let missing = deployments(&client, "nope")
        .patch(
            "web",
            &params,
            &Patch::Apply(deployment("web", json!({}), 1)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(status) if status.code == 404),
        "{missing}"
    );

    let deleted = namespaces
        .delete("preview", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the namespace, terminating");
    let terminating = namespaces.get("preview").await.unwrap();
    assert_eq!(terminating.data["status"]["phase"], json!("Terminating"));
    // As `kubectl delete namespace` waits: a watch from the delete's
    // resourceVersion sees the namespace's DELETED once its grace is over.
    let since = deleted
        .metadata
        .resource_version
        .expect("a resourceVersion");
    let mut stream = Box::pin(
        namespaces
            .watch(
                &WatchParams::default().fields("metadata.name=preview"),
                &since,
            )
            .await
            .unwrap(),
    );
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(event) = stream.next().await {
            if let WatchEvent::Deleted(object) = event.unwrap() {
                return object;
            }
        }
        panic!("the watch ended without the namespace's deletion");
    })
    .await
    .expect("the deletion reaches a watch from the delete's resourceVersion");
    assert_eq!(gone.metadata.name.as_deref(), Some("preview"));
    let version = |rv: &Option<String>| rv.as_deref().and_then(|v| v.parse::<u64>().ok());
    assert!(
        version(&gone.metadata.resource_version) > version(&Some(since)),
        "the deletion is a newer version"
    );
    assert!(namespaces.get_opt("preview").await.unwrap().is_none());
    assert!(
        emulator
            .store()
            .object("apps", "deployments", "preview", "web")
            .is_none()
    );
}

#[tokio::test]
async fn custom_resources_appear_once_their_crd_is_applied() {
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": { "group": "example.com", "scope": "Namespaced",
                  "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"] },
                  "versions": [{ "name": "v1", "served": true, "storage": true }] }
    });
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("gantry").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("widgets served");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let created = widgets
        .patch("w", &PatchParams::apply("gantry"), &Patch::Apply(widget))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], json!(3));
}

#[tokio::test]
async fn faults_are_injected_and_an_unreachable_cluster_refuses_connections() {
    let mut emulator = Emulator::start(Options::default()).await.unwrap();
    // Without kube's own retries, to see each injected failure.
    let mut config = Config::new(emulator.url().parse().unwrap());
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    emulator.set_faults(Faults {
        latency: Duration::from_millis(60),
        fail_next: 1,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let error = client.apiserver_version().await.unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 503),
        "{error}"
    );
    assert!(client.apiserver_version().await.is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "latency applies to every request"
    );
    emulator.set_faults(Faults::default());
    emulator.stop().await;
    assert!(
        client.apiserver_version().await.is_err(),
        "stopped = unreachable"
    );
    emulator.restart().await.unwrap();
    assert!(
        client.apiserver_version().await.is_ok(),
        "back, with the same port"
    );
}

#[tokio::test]
async fn a_denied_create_refuses_an_apply_that_would_create_but_not_one_that_updates() {
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let api = deployments(&client, "default");
    let params = PatchParams::apply("test").force();
    api.patch(
        "old",
        &params,
        &Patch::Apply(deployment("old", json!({}), 1)),
    )
    .await
    .unwrap();
    emulator.set_denied(vec![kube_emulator::Denied::new(
        "create",
        "apps",
        "deployments",
    )]);
    let refused = api
        .patch(
            "new",
            &params,
            &Patch::Apply(deployment("new", json!({}), 1)),
        )
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403);
            assert!(
                status
                    .message
                    .contains("cannot create resource \"deployments\""),
                "{}",
                status.message
            );
        }
        other => panic!("wanted a 403, got {other}"),
    }
    api.patch(
        "old",
        &params,
        &Patch::Apply(deployment("old", json!({}), 2)),
    )
    .await
    .unwrap();
}

// A watcher that falls behind — its client reads nothing while thousands
// of changes happen — is closed, as the apiserver closes a watcher that
// cannot keep up: its client then lists and watches again, instead of
// going on with a gap it cannot see.
#[tokio::test]
async fn a_watch_that_falls_behind_is_closed_rather_than_left_with_a_gap() {
    use futures_util::StreamExt;
    const CHANGES: usize = 8_000;
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let client = client(&emulator).await;
    let config_maps = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &config_maps);
    let listed = api.list(&ListParams::default()).await.unwrap();
    let version = listed.metadata.resource_version.unwrap();
    let mut stream = Box::pin(api.watch(&WatchParams::default(), &version).await.unwrap());
    // Written straight into the store while nobody reads the watch: more
    // than the sockets' buffers hold and the emulator's event channel keeps.
    let store = emulator.store();
    let resource = store.find("", "v1", "configmaps").unwrap();
    let filler = "x".repeat(4096);
    for n in 0..CHANGES {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("c{n}"), "namespace": "default" },
            "data": { "filler": filler },
        });
        store
            .create(&resource, "default", &object, "test", false)
            .unwrap();
    }
    let mut added = 0;
    let mut through: u64 = version.parse().unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(object)) => {
                    added += 1;
                    through = object.metadata.resource_version.unwrap().parse().unwrap();
                }
                // A bookmark never claims more than the watcher was sent:
                // resuming from it must not skip what it missed.
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    let claimed: u64 = bookmark.metadata.resource_version.parse().unwrap();
                    assert!(claimed <= through, "bookmark {claimed} ahead of {through}");
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the watch was left open with a gap");
    assert!(
        added < CHANGES,
        "{added} of {CHANGES}: it never fell behind"
    );
}

/// The kubelet: a bare pod's containers run as sandboxed local processes —
/// its init container first, then its container — their output is their
/// log, their exit codes their terminated states, and the pod ends Failed
/// when one fails; an image the test did not map waits in ErrImagePull; a
/// pod deleted while it runs has its process killed.
#[tokio::test]
async fn the_kubelet_runs_a_bare_pods_containers_as_processes() {
    let emulator = with_kubelet().await;
    let client = client(&emulator).await;
    let pods: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
    );
    let pod = |name: &str, image: &str, script: &str| {
        serde_json::from_value::<DynamicObject>(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{ "name": "fetch", "image": "test/shell", "command": ["/bin/sh", "-c", "echo fetching"] }],
                "containers": [{ "name": "step", "image": image, "args": ["-c", script],
                                 "env": [{ "name": "GREETING", "value": "hello" }] }],
            },
        }))
        .unwrap()
    };
    let phase = |pods: Api<DynamicObject>, name: &'static str| async move {
        for _ in 0..200 {
            let found = pods.get(name).await.unwrap();
            let phase = found.data["status"]["phase"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let waiting =
                found.data["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            if phase == "Succeeded" || phase == "Failed" || waiting == "ErrImagePull" {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pod {name} did not end");
    };

    pods.create(
        &PostParams::default(),
        &pod("ok", "test/shell", "echo $GREETING from $HOSTNAME; exit 0"),
    )
    .await
    .unwrap();
    let ok = phase(pods.clone(), "ok").await;
    assert_eq!(ok.data["status"]["phase"], "Succeeded");
    assert_eq!(
        ok.data["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    let store = emulator.store();
    assert_eq!(store.log("default", "ok", "fetch"), "fetching\n");
    assert_eq!(store.log("default", "ok", "step"), "hello from ok\n");

    pods.create(
        &PostParams::default(),
        &pod("bad", "test/shell", "echo failing >&2; exit 3"),
    )
    .await
    .unwrap();
    let bad = phase(pods.clone(), "bad").await;
    assert_eq!(bad.data["status"]["phase"], "Failed");
    let terminated = &bad.data["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (
            terminated["exitCode"].as_i64(),
            terminated["reason"].as_str()
        ),
        (Some(3), Some("Error"))
    );
    assert_eq!(store.log("default", "bad", "step"), "failing\n");

    pods.create(
        &PostParams::default(),
        &pod("nope", "registry.example.com/missing:1", "true"),
    )
    .await
    .unwrap();
    let nope = phase(pods.clone(), "nope").await;
    assert_eq!(nope.data["status"]["phase"], "Pending");

    // Deleted while it runs: the process goes too.
    let marker = format!("kubelet-sleeper-{}", std::process::id());
    pods.create(
        &PostParams::default(),
        &pod(
            "sleeper",
            "test/shell",
            &format!("while true; do sleep 1; done; : {marker}"),
        ),
    )
    .await
    .unwrap();
    // Whether a process whose command line holds the marker runs.
    let running = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&marker))
            })
    };
    for _ in 0..200 {
        if running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running(), "the container runs");
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..200 {
        if !running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!running(), "the container is killed with its pod");
}

/// A pod's log followed as it is written, with timestamps; resumed from
/// the last line's timestamp it repeats nothing and loses nothing (what a
/// client does after its stream was cut); the stream ends with the
/// container.
#[tokio::test]
async fn a_pods_log_is_followed_and_resumed_by_timestamp() {
    use futures_util::{AsyncBufReadExt, TryStreamExt};
    let emulator = with_kubelet().await;
    let client = client(&emulator).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "talker" },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "talk", "image": "test/shell",
            "args": ["-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"] }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // Followed from the start (once the container runs): every line, in
    // order, then the end of the stream.
    let params = kube::api::LogParams {
        follow: true,
        timestamps: true,
        ..Default::default()
    };
    let stream = loop {
        match pods.log_stream("talker", &params).await {
            Ok(stream) => break stream,
            // Not started yet: a real server says so too.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let lines: Vec<String> = stream.lines().try_collect().await.unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(texts, ["line 1", "line 2", "line 3", "line 4", "line 5"]);
    let stamps: Vec<&str> = lines.iter().map(|l| l.split_once(' ').unwrap().0).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");

    // Resumed after line 3: from its timestamp, dropping what is not newer.
    let since = stamps[2];
    let url = format!(
        "{}/api/v1/namespaces/default/pods/talker/log?timestamps=true&sinceTime={since}",
        emulator.url()
    );
    let again = reqwest::get(url).await.unwrap().text().await.unwrap();
    let resumed: Vec<&str> = again
        .lines()
        .filter(|l| l.split_once(' ').unwrap().0 > since)
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(resumed, ["line 4", "line 5"]);
}

/// A container over its memory limit is killed and says so: OOMKilled,
/// exit 137, at once — not at some timeout.
#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let emulator = with_kubelet().await;
    let client = client(&emulator).await;
    let pods: Api<DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
    );
    let pod: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "hog" },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "hog", "image": "test/shell",
            "args": ["-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); sleep 30"],
            "resources": { "limits": { "memory": "32Mi" } } }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut terminated = serde_json::Value::Null;
    for _ in 0..400 {
        let found = pods.get("hog").await.unwrap();
        terminated = found.data["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        if terminated.is_object() {
            assert_eq!(found.data["status"]["phase"], "Failed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137);
}

/// An emulator whose kubelet runs `test/shell` as `/bin/sh`.
async fn with_kubelet() -> Emulator {
    Emulator::start(Options {
        kubelet: Some(kube_emulator::Kubelet {
            images: [("test/shell".to_string(), vec!["/bin/sh".to_string()])].into(),
        }),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Polls `pod` until `done` holds of it (or it is gone: None).
async fn pod_until(
    pods: &Api<DynamicObject>,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    for _ in 0..400 {
        match pods.get_opt(name).await.unwrap() {
            None => return None,
            Some(pod) => {
                let value = serde_json::to_value(&pod).unwrap();
                if done(&value) {
                    return Some(value);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {name} never got there");
}

fn pods_api(client: Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        "default",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
    )
}

#[tokio::test]
async fn a_pods_containers_share_its_volumes_read_its_secrets_and_start_in_their_working_dir() {
    let emulator = with_kubelet().await;
    let client = client(&emulator).await;
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret")),
    );
    let pods = pods_api(client.clone());
    let pod: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "builder" },
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{ "name": "work", "emptyDir": {} }],
            "initContainers": [{ "name": "fetch", "image": "test/shell",
                "args": ["-c", "echo from-init > /workspace/handed-over"],
                "volumeMounts": [{ "name": "work", "mountPath": "/workspace" }] }],
            "containers": [{ "name": "step", "image": "test/shell", "workingDir": "/workspace",
                "args": ["-c", "cat handed-over; echo \"token=$TOKEN one=$ONE\"; touch /workspace/x 2>&1 || true; pwd"],
                "envFrom": [{ "secretRef": { "name": "builder-secrets" } }],
                "env": [{ "name": "ONE", "valueFrom": { "secretKeyRef": { "name": "builder-secrets", "key": "TOKEN" } } }],
                "volumeMounts": [{ "name": "work", "mountPath": "/workspace", "readOnly": true }] }],
        },
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    // The secret comes after the pod (owned by it): the step waits for it.
    let secret: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "builder-secrets", "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod",
            "name": "builder", "uid": created.metadata.uid.clone().unwrap() }] },
        "data": { "TOKEN": "czNjcmV0" },
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    pod_until(&pods, "builder", |p| p["status"]["phase"] == "Succeeded")
        .await
        .expect("the pod");
    let log = emulator.store().log("default", "builder", "step");
    assert!(
        log.contains("from-init\n"),
        "the init container's file: {log}"
    );
    assert!(log.contains("token=s3cret one=s3cret"), "{log}");
    assert!(
        log.contains("Read-only file system"),
        "a read-only mount: {log}"
    );
    assert!(log.ends_with("/workspace\n"), "{log}");
    // The pod goes, and its secret with it.
    pods.delete("builder", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..200 {
        if secrets.get_opt("builder-secrets").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pod's secret outlived it");
}

#[tokio::test]
async fn a_deleted_pod_is_terminated_within_its_grace_period_and_a_deadline_fails_it() {
    let emulator = with_kubelet().await;
    let pods = pods_api(client(&emulator).await);
    let pod = |name: &str, script: &str, deadline: Option<u64>| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "restartPolicy": "Never", "activeDeadlineSeconds": deadline,
                "containers": [{ "name": "main", "image": "test/shell", "args": ["-c", script] }] },
        }))
        .unwrap()
    };
    // TERM is trapped: the pod stays, terminating, while it cleans up.
    pods.create(
        &PostParams::default(),
        &pod(
            "graceful",
            "trap 'echo cleaning up; exit 0' TERM; echo started; while true; do sleep 0.05; done",
            None,
        ),
    )
    .await
    .unwrap();
    pod_until(&pods, "graceful", |p| {
        emulator_log_has(p, &emulator, "graceful", "started")
    })
    .await;
    let deleting = pods
        .delete(
            "graceful",
            &DeleteParams {
                grace_period_seconds: Some(20),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    let marked = deleting
        .left()
        .expect("a pod with a grace period is marked, not gone");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pod_until(&pods, "graceful", |_| false).await,
        None,
        "gone once it exits"
    );
    assert!(
        emulator
            .store()
            .log("default", "graceful", "main")
            .contains("cleaning up")
    );

    // TERM ignored: killed when the grace period ends.
    pods.create(
        &PostParams::default(),
        &pod(
            "stubborn",
            "trap '' TERM; echo started; while true; do sleep 0.05; done",
            None,
        ),
    )
    .await
    .unwrap();
    pod_until(&pods, "stubborn", |p| {
        emulator_log_has(p, &emulator, "stubborn", "started")
    })
    .await;
    pods.delete(
        "stubborn",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(
        pods.get_opt("stubborn").await.unwrap().is_some(),
        "within its grace period"
    );
    assert_eq!(pod_until(&pods, "stubborn", |_| false).await, None);

    // Past activeDeadlineSeconds: Failed, DeadlineExceeded.
    pods.create(&PostParams::default(), &pod("late", "sleep 30", Some(1)))
        .await
        .unwrap();
    let failed = pod_until(&pods, "late", |p| p["status"]["phase"] == "Failed")
        .await
        .unwrap();
    assert_eq!(failed["status"]["reason"], "DeadlineExceeded", "{failed}");
}

fn emulator_log_has(_pod: &serde_json::Value, emulator: &Emulator, name: &str, text: &str) -> bool {
    emulator.store().log("default", name, "main").contains(text)
}

#[tokio::test]
async fn a_cut_log_stream_breaks_off_and_resumes_from_its_last_timestamp() {
    let emulator = with_kubelet().await;
    let client = client(&emulator).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "chatty" },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "talk", "image": "test/shell",
            "args": ["-c", "for i in $(seq 1 30); do echo line $i; sleep 0.05; done"] }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    emulator.set_faults(Faults {
        cut_logs_after: Duration::from_millis(150),
        ..Faults::default()
    });
    // Resumed as a client must: from the second of the last line received
    // (sinceTime has second precision), dropping what it already has.
    let mut seen: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    let mut cuts = 0;
    loop {
        let since = last
            .as_deref()
            .map(|at| format!("&sinceTime={}Z", &at[..19]))
            .unwrap_or_default();
        let request = http::Request::get(format!(
            "/api/v1/namespaces/default/pods/chatty/log?follow=true&timestamps=true{since}"
        ))
        .body(Vec::new())
        .unwrap();
        let Ok(stream) = client.request_stream(request).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        use futures_util::AsyncBufReadExt;
        let mut lines = stream.lines();
        let mut broke = false;
        loop {
            match futures_util::StreamExt::next(&mut lines).await {
                Some(Ok(line)) => {
                    let (at, text) = line.split_once(' ').unwrap();
                    // RFC 3339 stamps of one width order as text.
                    if last.as_deref().is_some_and(|last| at <= last) {
                        continue;
                    }
                    last = Some(at.to_string());
                    seen.push(text.to_string());
                }
                Some(Err(_)) => {
                    broke = true;
                    break;
                }
                None => break,
            }
        }
        if broke {
            cuts += 1;
            continue;
        }
        if seen.len() >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, expected, "no line lost, none repeated");
    assert!(cuts >= 4, "the stream was cut {cuts} times");
}

/// A real server's concurrency rules, as the `kube` client meets them:
/// every write that carries a stale resourceVersion is a 409 Conflict
/// (with the real Status body); a write that changes nothing keeps the
/// version and tells no watch; a dry run gives out no version.
#[tokio::test]
async fn writes_keep_a_real_servers_concurrency_rules() {
    // No rollout controller writing status meanwhile: every version seen
    // here is the test's own writes'.
    let emulator = Emulator::start(Options {
        rollout: RolloutMode::Never,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = client(&emulator).await;
    let api = deployments(&client, "default");
    let apply = PatchParams::apply("gantry").force();
    let web = deployment("web", json!({ "tier": "front" }), 2);
    let first = api.patch("web", &apply, &Patch::Apply(&web)).await.unwrap();
    let version = first.metadata.resource_version.clone().unwrap();
    let stale = version
        .parse::<u64>()
        .unwrap()
        .saturating_sub(1)
        .to_string();

    // No-op writes: apply, update and patch keep the version, no event.
    let mut watch = Box::pin(api.watch(&WatchParams::default(), &version).await.unwrap());
    let again = api.patch("web", &apply, &Patch::Apply(&web)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    let replaced = api
        .replace("web", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    let merge = PatchParams::default();
    let patched = api
        .patch(
            "web",
            &merge,
            &Patch::Merge(json!({ "metadata": { "labels": { "tier": "front" } } })),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );

    // A stale resourceVersion: refused on update, patch and apply alike.
    let mut outdated = first.clone();
    outdated.metadata.resource_version = Some(stale.clone());
    outdated.data["spec"]["replicas"] = json!(5);
    let refusals = [
        api.replace("web", &PostParams::default(), &outdated).await.err(),
        api.patch("web", &merge, &Patch::Merge(json!({ "metadata": { "resourceVersion": stale }, "spec": { "replicas": 5 } }))).await.err(),
        api.patch("web", &apply, &Patch::Apply(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web", "resourceVersion": stale }, "spec": { "replicas": 5 } }))).await.err(),
    ];
    for refusal in refusals {
        match refusal {
            Some(kube::Error::Api(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
                assert!(
                    status.message.contains("the object has been modified"),
                    "{}",
                    status.message
                );
            }
            other => panic!("wanted a 409 Conflict, got {other:?}"),
        }
    }
    let live = api.get("web").await.unwrap();
    assert_eq!(live.data["spec"]["replicas"], 2);
    assert_eq!(
        live.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    // The current version is taken.
    let mut current = live.clone();
    current.data["spec"]["replicas"] = json!(3);
    let updated = api
        .replace("web", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    // The watch's first event is that change: the writes that changed
    // nothing told it nothing.
    use futures_util::StreamExt;
    match watch.next().await {
        Some(Ok(WatchEvent::Modified(object))) => {
            assert_eq!(object.data["spec"]["replicas"], 3);
            assert_eq!(
                object.metadata.resource_version,
                updated.metadata.resource_version
            );
        }
        other => panic!("wanted the one change, got {other:?}"),
    }

    // A dry-run create gives out no version and stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut other = DynamicObject::new(
        "other",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    other.data = deployment("other", json!({}), 1);
    let created = api.create(&dry, &other).await.unwrap();
    assert_eq!(created.metadata.resource_version, None);
    assert!(api.get_opt("other").await.unwrap().is_none());
}

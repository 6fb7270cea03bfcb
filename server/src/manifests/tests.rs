use super::*;

fn context() -> RenderContext {
    RenderContext {
        app: "shop".into(),
        env: "staging".into(),
        namespace: "shop-staging".into(),
        branch: "latest".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        image: Some("registry.example.com/shop:0123456789abcdef0123456789abcdef01234567".into()),
        url: Some("https://staging.shop.example.com".into()),
        variables: [("REPLICAS".to_string(), "3".to_string())]
            .into_iter()
            .collect(),
        pipeline_sha: "feedfacefeedfacefeedfacefeedfacefeedface".into(),
        stack_entry: "staging".into(),
        values: None,
        helm: helm(),
        chart: None,
        guardrails: Default::default(),
        capabilities: None,
    }
}

/// The real helm `./x` installs into `.tools/bin` (or `$HELM`).
fn helm() -> PathBuf {
    std::env::var_os("HELM").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/helm"),
        PathBuf::from,
    )
}

/// A chart as `helm create shop` makes it, in a folder of its own.
fn created_chart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let helm = helm();
    assert!(
        helm.is_file(),
        "{} is missing: ./x test installs helm into .tools/bin",
        helm.display()
    );
    let made = std::process::Command::new(&helm)
        .args(["create", "shop"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("helm create");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    dir
}

fn find<'a>(rendered: &'a Rendered, kind: &str) -> Option<&'a Value> {
    rendered.objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn a_chart_renders_with_values_per_environment_then_the_entrys_then_gantrys() {
    let dir = created_chart();
    let chart = dir.path().join("shop");
    std::fs::write(
        chart.join("values-staging.yaml"),
        "replicaCount: 2
service:
  port: 8080
",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/release.yaml"),
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: release
data:
  commit: {{ .Values.gantry.commit | quote }}
  env: {{ .Values.gantry.env | quote }}
",
    )
    .unwrap();
    let staging = RenderContext {
        values: Some(json!({ "replicaCount": 4 })),
        ..context()
    };
    let rendered = render(&chart, "apps/shop/deploy", &staging).expect("renders");
    let deployment = find(&rendered, "Deployment").expect("a Deployment");
    assert_eq!(
        deployment["spec"]["replicas"], 4,
        "the entry's values win over values-staging.yaml"
    );
    assert_eq!(
        deployment["metadata"]["labels"][APP_LABEL], "shop",
        "labelled as Gantry's"
    );
    let service = find(&rendered, "Service").expect("a Service");
    assert_eq!(
        service["spec"]["ports"][0]["port"], 8080,
        "values-staging.yaml over values.yaml"
    );
    let release = find(&rendered, "ConfigMap").expect("the ConfigMap");
    assert_eq!(release["data"]["commit"], staging.commit.as_str());
    assert_eq!(release["data"]["env"], "staging");
    assert!(
        rendered.objects.iter().all(|o| o["kind"] != "Pod"),
        "helm test pods are not deployed"
    );
    // Another entry has no values file of its own: the chart's defaults.
    let preview = RenderContext {
        stack_entry: "preview".into(),
        ..context()
    };
    let rendered = render(&chart, "apps/shop/deploy", &preview).expect("renders");
    assert_eq!(
        find(&rendered, "Deployment").unwrap()["spec"]["replicas"],
        1
    );
    assert_eq!(
        find(&rendered, "Service").unwrap()["spec"]["ports"][0]["port"],
        80
    );
}

#[test]
fn a_chart_that_fails_names_its_file_and_no_server_path() {
    let dir = created_chart();
    let chart = dir.path().join("shop");
    std::fs::write(
        chart.join("templates/broken.yaml"),
        "{{ .Values.nothing.here }}
",
    )
    .unwrap();
    let error = render(&chart, "apps/shop/deploy", &context())
        .unwrap_err()
        .to_string();
    assert!(error.contains("templates/broken.yaml"), "{error}");
    assert!(
        !error.contains(&dir.path().display().to_string()),
        "no server path: {error}"
    );
    assert!(!error.contains("/tmp"), "no server path: {error}");

    // A hook Gantry cannot run is refused with its file and name.
    std::fs::remove_file(chart.join("templates/broken.yaml")).unwrap();
    std::fs::write(
        chart.join("templates/migrate.yaml"),
        "apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    helm.sh/hook: post-delete
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{ name: m, image: busybox }]
",
    )
    .unwrap();
    let error = render(&chart, "apps/shop/deploy", &context())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("apps/shop/deploy/templates/migrate.yaml")
            && error.contains("Job/migrate")
            && error.contains("post-delete"),
        "{error}"
    );

    // Without helm the deploy says what to install.
    let missing = RenderContext {
        helm: PathBuf::from("/nonexistent/helm"),
        ..context()
    };
    let error = render(&chart, "apps/shop/deploy", &missing)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("install helm") && error.contains("deploy.helm_path"),
        "{error}"
    );
}

fn deploy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    dir
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ app }}
spec:
  replicas: {{ replicas }}
  selector: { matchLabels: { app: \"{{ app }}\" } }
  template:
    metadata: { labels: { app: \"{{ app }}\" } }
    spec:
      containers:
        - name: web
          image: \"{{ image }}\"
          env: [{ name: URL, value: \"{{ url }}\" }, { name: NS, value: \"{{ namespace }}\" }]
---
apiVersion: v1
kind: Secret
metadata: { name: {{ app }}-db }
stringData: { password: hunter22 }
";

#[test]
fn templates_render_with_the_documented_variables_and_gantry_labels() {
    let dir = deploy_dir(&[
        ("app.yaml", DEPLOYMENT),
        (
            "svc.yml",
            "apiVersion: v1\nkind: Service\nmetadata: { name: shop }\nspec: { ports: [{ port: 80 }] }\n",
        ),
    ]);
    let rendered = render(dir.path(), "apps/shop/deploy", &context()).expect("renders");
    assert_eq!(rendered.objects.len(), 3);
    let deployment = &rendered.objects[0];
    assert_eq!(deployment["spec"]["replicas"], json!(3));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("registry.example.com/shop:0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"],
        json!("shop-staging")
    );
    assert_eq!(
        deployment["metadata"]["labels"][MANAGED_BY],
        json!("gantry")
    );
    assert_eq!(
        deployment["metadata"]["labels"][ENV_LABEL],
        json!("staging")
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["gantry.dev/pipeline-sha"],
        json!("feedfacefeedfacefeedfacefeedfacefeedface")
    );
    let yaml = Rendered::to_yaml(&rendered.objects);
    assert_eq!(Rendered::from_yaml(&yaml).expect("parses back"), rendered);
}

#[test]
fn secrets_are_redacted_for_people() {
    let dir = deploy_dir(&[("app.yaml", DEPLOYMENT)]);
    let rendered = render(dir.path(), "apps/shop/deploy", &context()).expect("renders");
    let redacted = Rendered::to_yaml(&rendered.redacted());
    assert!(!redacted.contains("hunter22"), "{redacted}");
    assert!(redacted.contains("<redacted sha256:"), "{redacted}");
    assert!(
        Rendered::to_yaml(&rendered.objects).contains("hunter22"),
        "the sealed copy keeps the value"
    );
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let undefined = deploy_dir(&[(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: \"{{ nope }}\" }\n",
    )]);
    let error =
        render(undefined.path(), "apps/shop/deploy", &context()).expect_err("undefined variable");
    assert!(
        error
            .to_string()
            .starts_with("apps/shop/deploy/a.yaml: template error:"),
        "{error}"
    );

    let no_name = deploy_dir(&[(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    )]);
    let error = render(no_name.path(), "apps/shop/deploy", &context()).expect_err("no name");
    assert_eq!(
        error.to_string(),
        "apps/shop/deploy/a.yaml: document 1: `metadata.name` is missing"
    );

    let elsewhere = deploy_dir(&[(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c, namespace: kube-system }\n",
    )]);
    let error =
        render(elsewhere.path(), "apps/shop/deploy", &context()).expect_err("other namespace");
    assert!(
        error.to_string().contains("go to \"shop-staging\""),
        "{error}"
    );

    let twice = deploy_dir(&[
        (
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n",
        ),
        (
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n",
        ),
    ]);
    let error = render(twice.path(), "apps/shop/deploy", &context()).expect_err("duplicate");
    assert!(
        error.to_string().contains("configmap/c is defined twice"),
        "{error}"
    );

    let missing = tempfile::tempdir().expect("tempdir");
    let error = render(
        &missing.path().join("deploy"),
        "apps/shop/deploy",
        &context(),
    )
    .expect_err("missing");
    assert_eq!(
        error.to_string(),
        "apps/shop/deploy/ is missing: cluster targets need the app's manifests there"
    );
}

#[test]
fn a_kustomization_is_built_after_the_templates_render() {
    let dir = deploy_dir(&[
        (
            "kustomization.yaml",
            "resources: [cm.yaml]\ncommonLabels: { team: web }\n",
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: \"{{ app }}-config\" }\ndata: { env: \"{{ env }}\" }\n",
        ),
    ]);
    match render(dir.path(), "apps/shop/deploy", &context()) {
        Ok(rendered) => {
            assert_eq!(
                rendered.objects[0]["metadata"]["name"],
                json!("shop-config")
            );
            assert_eq!(
                rendered.objects[0]["metadata"]["labels"]["team"],
                json!("web")
            );
            assert_eq!(rendered.objects[0]["data"]["env"], json!("staging"));
        }
        // Without either tool the error says what to install.
        Err(ManifestError::NoKustomize { file }) => {
            assert_eq!(file, "apps/shop/deploy/kustomization.yaml")
        }
        Err(other) => panic!("{other}"),
    }
}

/// The whole rendered text, exactly as applied and as people see it: any
/// change to labels, annotations, ordering or redaction shows up here.
#[test]
fn rendered_manifests_are_stable() {
    let dir = deploy_dir(&[
        ("app.yaml", DEPLOYMENT),
        (
            "svc.yml",
            "apiVersion: v1\nkind: Service\nmetadata: { name: shop }\nspec: { ports: [{ port: 80 }] }\n",
        ),
    ]);
    let rendered = render(dir.path(), "apps/shop/deploy", &context()).expect("renders");
    insta::assert_snapshot!("applied", Rendered::to_yaml(&rendered.objects));
    insta::assert_snapshot!("shown", Rendered::to_yaml(&rendered.redacted()));
}

#[test]
fn objects_come_in_waves_and_a_wave_is_a_whole_number() {
    let dir = deploy_dir(&[(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: late, annotations: { gantry.dev/wave: \"2\" } }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: plain }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: early, annotations: { gantry.dev/wave: \"-1\" } }\n---\napiVersion: v1\nkind: Namespace\nmetadata: { name: extra, annotations: { gantry.dev/wave: \"2\" } }\n",
    )]);
    let may_create_namespaces = RenderContext {
        guardrails: crate::gitops::guardrails::Guardrails {
            rule: "apps.shop".into(),
            cluster_kinds: vec!["Namespace".into()],
            ..Default::default()
        },
        ..context()
    };
    let rendered = render(dir.path(), "apps/shop/deploy", &may_create_namespaces).expect("renders");
    let order: Vec<&str> = rendered
        .objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["extra", "early", "plain", "late"],
        "a namespace before every wave, then by wave"
    );
    assert_eq!(
        rendered.objects.iter().map(wave_of).collect::<Vec<_>>(),
        [i64::MIN, -1, 0, 2]
    );

    let bad = deploy_dir(&[(
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: soon, annotations: { gantry.dev/wave: \"soon\" } }\n",
    )]);
    let error = render(bad.path(), "apps/shop/deploy", &context())
        .expect_err("not a number")
        .to_string();
    assert!(
        error.starts_with(
            "apps/shop/deploy/b.yaml: document 1: ConfigMap/soon: annotation gantry.dev/wave"
        ),
        "{error}"
    );
}

#[test]
fn values_a_charts_schema_refuses_are_named() {
    let dir = created_chart();
    let chart = dir.path().join("shop");
    std::fs::write(
        chart.join("values.schema.json"),
        r#"{"type": "object", "properties": {"service": {"type": "object", "additionalProperties": false, "properties": {"type": {"type": "string"}, "port": {"type": "integer"}}}}}"#,
    )
    .unwrap();
    let typo = RenderContext {
        values: Some(json!({ "service": { "prot": 8080 } })),
        ..context()
    };
    let error = render(&chart, "apps/shop/deploy", &typo)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("helm could not render apps/shop/deploy:"),
        "{error}"
    );
    assert!(error.contains("prot"), "the unknown key is named: {error}");
    assert!(!error.contains("/tmp"), "no server path: {error}");
    // Gantry's own `gantry` key passes a schema that allows what it does not list.
    render(&chart, "apps/shop/deploy", &context()).expect("valid values render");
}

#[test]
fn a_chart_link_out_of_the_chart_is_refused() {
    let dir = created_chart();
    let chart = dir.path().join("shop");
    std::fs::create_dir_all(chart.join("files")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", chart.join("files/host")).unwrap();
    let error = render(&chart, "apps/shop/deploy", &context())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "apps/shop/deploy/files/host: a symbolic link that leads out of the chart"
        ),
        "{error}"
    );
    // A link inside the chart is fine.
    std::fs::remove_file(chart.join("files/host")).unwrap();
    std::os::unix::fs::symlink("../values.yaml", chart.join("files/values")).unwrap();
    render(&chart, "apps/shop/deploy", &context()).expect("a link within the chart renders");
}

#[test]
fn an_object_written_with_and_without_its_namespace_is_defined_twice() {
    let dir = deploy_dir(&[(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: settings }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: settings, namespace: shop-staging }\n",
    )]);
    let error = render(dir.path(), "apps/shop/deploy", &context())
        .unwrap_err()
        .to_string();
    assert!(error.contains("defined twice"), "{error}");
}

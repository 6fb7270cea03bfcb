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
    }
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

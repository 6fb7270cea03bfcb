use super::*;

const APP: &str = "apiVersion: gantry.dev/v1
source: file:///srv/git/shop.git
stack:
  - env: preview
    branches: \"*\"
    target: local
    ttl: 48h
  - env: staging
    branch: latest
  - env: production
    branch: master
    approval: { required: 2, roles: [admin] }
    variables:
      REPLICAS: \"3\"
";

const PIPELINE: &str = "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{ commit }}\"
steps:
  - { name: build, run: \"make\" }
  - name: unit
    run: ./test.sh
    timeout: 5m
    reports: [reports/junit.xml]
    secrets: [NPM_TOKEN]
  - deploy
  - { name: smoke, run: \"./smoke.sh\" }
local:
  run: python3 app.py --port $PORT
  health: /healthz
";

fn issues(app: &str, pipeline: &str) -> Vec<ConfigIssue> {
    load_app("shop", Some(app), Some(pipeline), &[]).expect_err("invalid")
}

#[test]
fn a_valid_app_loads_into_its_stack_and_pipeline() {
    let config = load_app("shop", Some(APP), Some(PIPELINE), &[]).expect("valid");
    assert_eq!(config.source, "file:///srv/git/shop.git");
    assert_eq!(config.stack.len(), 3);
    assert_eq!(config.stack[0].branches, BranchMatch::Glob("*".into()));
    assert_eq!(config.stack[0].ttl_seconds, Some(48 * 3600));
    assert_eq!(config.stack[1].targets, vec!["local".to_string()]);
    assert_eq!(
        config.stack[2].approval,
        Some(ApprovalPolicy {
            required: 2,
            roles: vec!["admin".into()],
            self_approval: false,
            reauth: false,
            forge_merge: false,
            forge_push: false,
        })
    );
    assert_eq!(
        config.stack[2]
            .variables
            .get("REPLICAS")
            .map(String::as_str),
        Some("3")
    );
    let names: Vec<&str> = config.pipeline.steps.iter().map(Step::name).collect();
    assert_eq!(names, ["build", "unit", "deploy", "smoke"]);
    let Step::Command(unit) = &config.pipeline.steps[1] else {
        panic!("a command")
    };
    assert_eq!(unit.timeout_seconds, 300);
    assert_eq!(unit.reports, ["reports/junit.xml"]);
    assert_eq!(
        config.pipeline.local.as_ref().map(|l| l.health.as_str()),
        Some("/healthz")
    );
}

#[test]
fn without_a_stack_the_seed_defaults_apply_staging_and_production_protected() {
    let config = load_app(
        "shop",
        Some("apiVersion: gantry.dev/v1\nsource: /srv/git/shop.git\n"),
        Some(PIPELINE),
        &[],
    )
    .expect("valid");
    let summary: Vec<(String, BranchMatch, bool)> = config
        .stack
        .iter()
        .map(|e| (e.env.clone(), e.branches.clone(), e.approval.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            ("preview".to_string(), BranchMatch::Glob("*".into()), false),
            (
                "staging".to_string(),
                BranchMatch::Exact("latest".into()),
                true
            ),
            (
                "production".to_string(),
                BranchMatch::Exact("master".into()),
                true
            ),
        ]
    );
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let found = issues("apiVersion: gantry.dev/v1\nsource: [unclosed\n", PIPELINE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].file, "apps/shop/app.yaml");
    assert!(found[0].line.is_some(), "{found:?}");
}

#[test]
fn an_unknown_key_names_its_line_and_field() {
    let app = APP.replace("    ttl: 48h\n", "    ttl: 48h\n    tll: 1h\n");
    let found = issues(&app, PIPELINE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].file, "apps/shop/app.yaml");
    assert_eq!(found[0].line, Some(8), "{found:?}");
    assert_eq!(
        found[0].message,
        "unknown field `tll`, expected one of env, branch, branches, target, targets, url, namespace, ttl, approval, variables, rollout_timeout, stable_after, self_heal, freeze, values, chart, promote_from, requires, strategy, rollout"
    );
    assert_eq!(found[0].field, "tll");
    assert!(
        found[0].message.contains("unknown field"),
        "{}",
        found[0].message
    );
    assert!(found[0].message.contains("tll"), "{}", found[0].message);
}

#[test]
fn duplicate_environment_names_are_refused_at_their_line() {
    let app = APP.replace("  - env: production", "  - env: staging");
    let found = issues(&app, PIPELINE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "stack[2].env");
    assert_eq!(found[0].line, Some(10));
    assert_eq!(found[0].message, "duplicate environment name \"staging\"");
    assert_eq!(
        found[0].to_string(),
        "apps/shop/app.yaml:10:10 stack[2].env: duplicate environment name \"staging\""
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let app = APP
        .replace("branch: latest", "branch: \"bad..name\"")
        .replace("target: local", "target: prod-eu")
        .replace("required: 2", "required: 0")
        .replace("apiVersion: gantry.dev/v1", "apiVersion: gantry.dev/v9");
    let pipeline = PIPELINE
        .replace("name: unit", "name: build")
        .replace("health: /healthz", "health: healthz");
    let found = issues(&app, &pipeline);
    let fields: Vec<&str> = found.iter().map(|issue| issue.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "apiVersion",
            "stack[0].target",
            "stack[1].branch",
            "stack[2].approval.required",
            "steps[1].name",
            "local.health"
        ],
        "{found:#?}"
    );
    assert!(
        found[1]
            .message
            .contains("\"prod-eu\" is not a registered cluster (registered: none"),
        "{}",
        found[1].message
    );
}

#[test]
fn registered_clusters_are_valid_targets() {
    let app = APP.replace("target: local", "targets: [dev, local]");
    let config = load_app("shop", Some(&app), Some(PIPELINE), &["dev".into()]).expect("valid");
    assert_eq!(config.stack[0].targets, ["dev", "local"]);
}

#[test]
fn steps_are_deploy_or_commands() {
    let pipeline = PIPELINE.replace("  - deploy\n", "  - deploy\n  - deploy\n  - publish\n");
    let found = issues(APP, &pipeline);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.contains("unknown step \"publish\""),
        "{found:?}"
    );

    let pipeline = PIPELINE.replace("  - deploy\n", "  - deploy\n  - deploy\n");
    let found = issues(APP, &pipeline);
    assert_eq!(
        found[0].message, "`deploy` appears more than once",
        "{found:?}"
    );
}

#[test]
fn paths_secrets_and_variables_are_checked() {
    let pipeline = PIPELINE
        .replace(
            "reports: [reports/junit.xml]",
            "reports: [../../etc/passwd]",
        )
        .replace(
            "secrets: [NPM_TOKEN]",
            "secrets: [npm-token, GANTRY_COMMIT]",
        );
    let found = issues(APP, &pipeline);
    let messages: Vec<&str> = found.iter().map(|issue| issue.message.as_str()).collect();
    assert!(
        messages[0].contains("is not a variable name"),
        "{messages:?}"
    );
    assert!(messages[1].contains("reserved for Gantry"), "{messages:?}");
    assert!(
        messages[2].contains("must be a path inside the checkout"),
        "{messages:?}"
    );
}

#[test]
fn a_deploying_pipeline_on_the_local_target_needs_a_local_section() {
    let pipeline = PIPELINE.split("local:").next().expect("prefix").to_string();
    let found = issues(APP, &pipeline);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "local");
}

#[test]
fn missing_files_and_bad_app_names_are_reported() {
    let found = load_app("Shop_1", None, Some(PIPELINE), &[]).expect_err("invalid");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].message.contains("app folder name"));
    assert_eq!(found[1].file, "apps/Shop_1/app.yaml");
    assert_eq!(found[1].message, "file is missing");
}

#[test]
fn names_that_would_break_hostnames_are_invalid() {
    for bad in [
        "",
        "Prod",
        "a--b",
        "-a",
        "a-",
        "a_b",
        "a.b",
        "1abc",
        &"x".repeat(31),
    ] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    for good in ["a", "staging", "preview-2", "prod-eu-1"] {
        assert!(valid_name(good), "{good:?}");
    }
}

#[test]
fn freeze_windows_and_the_merge_strategy_are_read_and_checked() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    freeze:\n      - { start: \"0 18 * * FRI\", for: 62h, reason: weekend }\n",
    ) + "merge: fast-forward\n";
    let config = load_app("shop", Some(&app), Some(PIPELINE), &[]).expect("valid");
    assert_eq!(config.merge, MergeStrategy::FastForward);
    assert_eq!(config.stack[2].freeze.len(), 1);
    assert_eq!(config.stack[2].freeze[0].duration_seconds, 62 * 3600);
    assert_eq!(config.stack[2].freeze[0].reason, "weekend");

    let bad = app
        .replace("0 18 * * FRI", "friday evening")
        .replace("merge: fast-forward", "merge: squash");
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["merge", "stack[2].freeze[0].start"], "{found:?}");
    assert!(found[0].message.contains("\"squash\""), "{found:?}");
    assert!(found[1].message.contains("\"friday evening\""), "{found:?}");
}

#[test]
fn the_soak_and_the_commit_link_are_read_and_checked() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    stable_after: 30m\n",
    ) + "commit_url: \"https://git.example.com/shop/commit/{{ commit }}\"\n";
    let config = load_app("shop", Some(&app), Some(PIPELINE), &[]).expect("valid");
    assert_eq!(config.stack[2].stable_after_seconds, 30 * 60);
    assert_eq!(
        config.stack[1].stable_after_seconds,
        crate::gitops::schema::DEFAULT_STABLE_AFTER.as_secs()
    );
    assert_eq!(
        config.commit_url.as_deref(),
        Some("https://git.example.com/shop/commit/{{ commit }}")
    );

    let bad = app
        .replace("stable_after: 30m", "stable_after: 30d")
        .replace("{{ commit }}", "{{ sha }}");
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["commit_url", "stack[2].stable_after"], "{found:?}");
    assert!(found[1].message.contains("7d"), "{found:?}");
}

#[test]
fn steps_take_resources_and_a_network_with_precise_errors() {
    let pipeline = "apiVersion: gantry.dev/v1
steps:
  - name: build
    run: make
    resources: { memory: 512Mi, pids: 128, cpu: 0.5, tmp: 64Mi }
    network: none
  - { name: e2e, run: ./e2e.sh, network: host, resources: { cpu: 2 } }
  - deploy
local:
  run: ./serve
  resources: { memory: 1Gi }
";
    let config = load_app("shop", Some(APP), Some(pipeline), &[]).expect("valid");
    let Step::Command(build) = &config.pipeline.steps[0] else {
        panic!("a command")
    };
    assert_eq!(build.resources.memory_bytes, 512 << 20);
    assert_eq!(build.resources.pids, 128);
    assert_eq!(build.resources.cpu_millis, 500);
    assert_eq!(build.resources.tmp_bytes, 64 << 20);
    assert_eq!(build.network, StepNetwork::None);
    let Step::Command(e2e) = &config.pipeline.steps[1] else {
        panic!("a command")
    };
    assert_eq!(e2e.network, StepNetwork::Host);
    assert_eq!(e2e.resources.cpu_millis, 2000);
    assert_eq!(e2e.resources.memory_bytes, 2 << 30, "the default");
    let local = config.pipeline.local.expect("local");
    assert_eq!(local.resources.memory_bytes, 1 << 30);
    assert_eq!(local.network, StepNetwork::Default);

    let bad = "apiVersion: gantry.dev/v1
steps:
  - name: build
    run: make
    resources: { memory: 2GB, pids: 3, cpu: lots }
    network: internet
local:
  run: ./serve
  network: none
";
    let found = issues(APP, bad);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    for field in [
        "steps[0].resources.memory",
        "steps[0].resources.pids",
        "steps[0].resources.cpu",
        "steps[0].network",
        "local.network",
    ] {
        assert!(fields.contains(&field), "{field} in {found:?}");
    }
    assert!(
        found
            .iter()
            .all(|i| i.file == "apps/shop/pipeline.yaml" && i.line.is_some())
    );
}

#[test]
fn a_push_counts_as_an_approval_only_where_one_approval_is_required() {
    let app = |approval: &str| {
        format!(
            "apiVersion: gantry.dev/v1\nsource: /srv/git/shop.git\nstack:\n  - env: production\n    branch: master\n    target: local\n    approval: {approval}\n"
        )
    };
    let counted = load_app(
        "shop",
        Some(&app(
            "{ required: 1, forge_push: true, self_approval: true, forge_merge: true }",
        )),
        Some(PIPELINE),
        &[],
    )
    .expect("valid");
    let policy = counted.stack[0].approval.clone().expect("policy");
    assert!(policy.forge_push && policy.forge_merge);
    let issues = load_app(
        "shop",
        Some(&app(
            "{ required: 2, forge_push: true, self_approval: true }",
        )),
        Some(PIPELINE),
        &[],
    )
    .expect_err("two approvals and pushes that count");
    let text = format!("{issues:?}");
    assert!(
        text.contains("approval.forge_push") && text.contains("needs `required: 1`"),
        "{text}"
    );
    let issues = load_app(
        "shop",
        Some(&app("{ required: 1, forge_push: true }")),
        Some(PIPELINE),
        &[],
    )
    .expect_err("a push is its pusher's own approval");
    assert!(format!("{issues:?}").contains("needs `self_approval: true`"));
}

#[test]
fn helm_values_of_an_entry_are_a_mapping() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    values: { replicaCount: 3, ingress: { enabled: true } }\n",
    );
    let config = load_app("shop", Some(&app), Some(PIPELINE), &[]).expect("valid");
    assert_eq!(
        config.stack[2].values,
        Some(serde_json::json!({ "replicaCount": 3, "ingress": { "enabled": true } }))
    );
    assert_eq!(config.stack[1].values, None);

    let bad = app.replace(
        "values: { replicaCount: 3, ingress: { enabled: true } }",
        "values: [replicaCount]",
    );
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["stack[2].values"], "{found:?}");
    assert!(found[0].line.is_some(), "{found:?}");
}

#[test]
fn a_chart_from_a_repository_is_pinned_to_an_exact_version() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    chart: { repo: \"https://charts.example.com\", name: shop, version: 1.4.2 }\n",
    );
    let config = load_app("shop", Some(&app), Some(PIPELINE), &[]).expect("valid");
    let chart = config.stack[2].chart.clone().expect("the chart");
    assert_eq!(
        (
            chart.repo.as_str(),
            chart.name.as_str(),
            chart.version.as_str()
        ),
        ("https://charts.example.com", "shop", "1.4.2")
    );

    let bad = app
        .replace("https://charts.example.com", "file:///etc")
        .replace("version: 1.4.2", "version: \"^1.4\"");
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        ["stack[2].chart.repo", "stack[2].chart.version"],
        "{found:?}"
    );
    assert!(found[1].message.contains("exact"), "{found:?}");
}

#[test]
fn a_chart_repository_is_https_and_a_chart_never_a_flag_or_a_path() {
    let app = |repo: &str, name: &str, version: &str| {
        APP.replace(
            "    approval: { required: 2, roles: [admin] }\n",
            &format!("    approval: {{ required: 2, roles: [admin] }}\n    chart: {{ repo: \"{repo}\", name: \"{name}\", version: \"{version}\" }}\n"),
        )
    };
    assert!(
        load_app(
            "shop",
            Some(&app("http://127.0.0.1:8879", "shop", "1.0.0")),
            Some(PIPELINE),
            &[]
        )
        .is_ok(),
        "http to this machine"
    );
    for (repo, name, version, field) in [
        (
            "http://charts.example.com",
            "shop",
            "1.0.0",
            "stack[2].chart.repo",
        ),
        (
            "https://user:pass@charts.example.com",
            "shop",
            "1.0.0",
            "stack[2].chart.repo",
        ),
        (
            "https://charts.example.com",
            "--post-renderer=x",
            "1.0.0",
            "stack[2].chart.name",
        ),
        (
            "https://charts.example.com",
            "..",
            "1.0.0",
            "stack[2].chart.name",
        ),
        (
            "https://charts.example.com",
            "shop",
            "-1",
            "stack[2].chart.version",
        ),
    ] {
        let found = issues(&app(repo, name, version), PIPELINE);
        let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, [field], "{repo} {name} {version}: {found:?}");
    }
}

#[test]
fn the_admin_file_gives_each_app_its_guardrails() {
    assert_eq!(load_admin(None, &[]), Ok(AdminFile::default()));
    let admin = load_admin(Some(
        "apiVersion: gantry.dev/v1\napps:\n  \"*\": { namespaces: [\"{app}-*\"] }\n  shop:\n    clusters: [dev]\n    cluster_kinds: [ClusterRole, apiextensions.k8s.io/CustomResourceDefinition]\n",
    ), &[])
    .expect("valid");
    let shop = admin.for_app("shop");
    assert_eq!(shop.rule, "apps.shop");
    assert_eq!(shop.clusters, Some(vec!["dev".to_string()]));
    assert_eq!(shop.namespaces, None, "its own entry replaces the default");
    assert_eq!(shop.cluster_kinds.len(), 2);
    assert_eq!(
        admin.for_app("billing").namespaces,
        Some(vec!["{app}-*".to_string()])
    );

    // The stack may only use the clusters the guardrails allow.
    let app = "apiVersion: gantry.dev/v1\nsource: /srv/shop.git\nstack:\n  - env: staging\n    branch: latest\n    target: prod\n";
    let config = load_app("shop", Some(app), Some(PIPELINE), &["prod".into()]).expect("valid");
    let refused = guarded(config.clone(), &admin).expect_err("prod is not allowed");
    assert_eq!(refused[0].field, "stack.staging.targets");
    assert!(
        refused[0]
            .message
            .contains("gantry.yaml apps.shop.clusters allows dev"),
        "{refused:?}"
    );
    let billing = AppConfig {
        name: "billing".into(),
        ..config
    };
    assert_eq!(
        guarded(billing, &admin)
            .expect("any cluster")
            .guardrails
            .rule,
        "apps.\"*\""
    );
}

#[test]
fn a_bad_admin_file_names_line_and_field() {
    let found = load_admin(
        Some("apiVersion: gantry.dev/v1\napps:\n  shop:\n    cluster_kind: [ClusterRole]\n"),
        &[],
    )
    .expect_err("typo");
    assert_eq!(
        (found[0].file.as_str(), found[0].line),
        ("gantry.yaml", Some(4))
    );
    let found = load_admin(Some(
        "apiVersion: gantry.dev/v1\napps:\n  shop:\n    namespaces: [\"Kube_System\"]\n    cluster_kinds: [\"cluster role\"]\n",
    ), &[])
    .expect_err("bad values");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].field, "apps.shop.namespaces");
    assert_eq!(found[0].line, Some(4));
    assert!(found[1].message.contains("group/Kind"), "{found:?}");
}

#[test]
fn health_rules_load_from_the_admin_file_and_beside_it() {
    let lua = |path: &str, text: &str| vec![(path.to_string(), text.to_string())];
    let admin = load_admin(
        Some("apiVersion: gantry.dev/v1\nhealth:\n  - apiVersion: example.com/v1\n    kind: Widget\n    current: \"status.phase == 'Ready'\"\n    inProgress: \"status.phase == 'New'\"\n"),
        &lua("health/example.com/Gadget/health.lua", "return { status = 'Healthy' }"),
    )
    .expect("valid");
    let kinds: Vec<(&str, &str)> = admin
        .health
        .rules
        .iter()
        .map(|r| (r.group.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("example.com", "Gadget"), ("example.com", "Widget")]
    );

    // A CEL expression that does not compile: its line and column in the file.
    let found = load_admin(
        Some("apiVersion: gantry.dev/v1\nhealth:\n  - apiVersion: example.com/v1\n    kind: Widget\n    current: \"status.phase ==\"\n"),
        &[],
    )
    .expect_err("does not compile");
    assert_eq!(
        (found[0].file.as_str(), found[0].line),
        ("gantry.yaml", Some(5)),
        "{found:?}"
    );
    assert_eq!(found[0].field, "health.Widget.current");
    assert!(found[0].column.is_some_and(|c| c > 14), "{found:?}");

    // A Lua script that does not compile: its file and line.
    let found = load_admin(
        None,
        &lua("health/example.com/Gadget/health.lua", "hs = {}\nif then\n"),
    )
    .expect_err("syntax");
    assert_eq!(
        (found[0].file.as_str(), found[0].line),
        ("health/example.com/Gadget/health.lua", Some(2)),
        "{found:?}"
    );
    let found = load_admin(None, &lua("health/Gadget.lua", "return {}")).expect_err("misplaced");
    assert!(
        found[0]
            .message
            .contains("health/<group>/<Kind>/health.lua"),
        "{found:?}"
    );
}

// An app's own files cannot widen its guardrails: app.yaml has no such
// field (a developer who adds one is refused, naming it), and what the
// admin file says replaces anything a stored configuration held.
#[test]
fn an_app_cannot_grant_itself_guardrails() {
    let app = "apiVersion: gantry.dev/v1\nsource: /srv/shop.git\nguardrails: { cluster_kinds: [ClusterRole] }\n";
    let found = issues(app, PIPELINE);
    assert!(
        found.iter().any(|i| i.message.contains("guardrails")),
        "{found:?}"
    );
    let admin = load_admin(None, &[]).expect("no file");
    let mut config = load_app(
        "shop",
        Some("apiVersion: gantry.dev/v1\nsource: /srv/shop.git\n"),
        Some(PIPELINE),
        &[],
    )
    .expect("valid");
    config.guardrails.cluster_kinds = vec!["ClusterRole".into()];
    let guarded = guarded(config, &admin).expect("any cluster");
    assert!(guarded.guardrails.cluster_kinds.is_empty());
}

const BUILDS_ON_A_CLUSTER: &str = "apiVersion: gantry.dev/v1
executor: { kubernetes: { cluster: build, image: rust:1.95 } }
steps:
  - { name: build, run: make, image: \"registry.example.com/builder@sha256:abc\" }
  - { name: lint, run: make lint, executor: local }
";

#[test]
fn an_executor_is_local_or_a_cluster_with_its_image_per_step() {
    let config = load_app(
        "shop",
        Some("apiVersion: gantry.dev/v1\nsource: /srv/shop.git\n"),
        Some(BUILDS_ON_A_CLUSTER),
        &[],
    )
    .expect("valid");
    let Step::Command(build) = &config.pipeline.steps[0] else {
        panic!("a command")
    };
    let Step::Command(lint) = &config.pipeline.steps[1] else {
        panic!("a command")
    };
    assert_eq!(
        config.executor_of(build, &Executor::Local),
        Executor::Kubernetes(KubernetesExecutor {
            cluster: "build".into(),
            namespace: DEFAULT_NAMESPACE.into(),
            image: Some("rust:1.95".into()),
        })
    );
    assert_eq!(
        build.image.as_deref(),
        Some("registry.example.com/builder@sha256:abc")
    );
    assert_eq!(config.executor_of(lint, &Executor::Local), Executor::Local);
    // Bad values name their field.
    for (pipeline, field, says) in [
        (
            "executor: docker\nsteps: [deploy]\n",
            "executor",
            "unknown executor \"docker\"",
        ),
        (
            "executor: { kubernetes: { cluster: b, namespace: Bad_NS } }\nsteps: [deploy]\n",
            "executor.kubernetes.namespace",
            "not a namespace name",
        ),
        (
            "steps:\n  - { name: a, run: x, image: \"two words\" }\n",
            "steps[0].image",
            "not an image reference",
        ),
    ] {
        let found = issues(APP, &format!("apiVersion: gantry.dev/v1\n{pipeline}"));
        assert!(
            found
                .iter()
                .any(|i| (i.field == field || field == "executor") && i.message.contains(says)),
            "{pipeline}: {found:?}"
        );
    }
}

// An app's code runs where its builds run: an app cannot send its builds
// to a cluster the admins did not list (production, say), nor set its
// build pods' node selector, service account or security level.
#[test]
fn builds_run_only_on_clusters_the_admins_list_with_the_admins_pod_settings() {
    let config = |pipeline: &str| {
        load_app(
            "shop",
            Some("apiVersion: gantry.dev/v1\nsource: /srv/shop.git\n"),
            Some(pipeline),
            &[],
        )
    };
    let on_prod =
        config(&BUILDS_ON_A_CLUSTER.replace("cluster: build", "cluster: prod")).expect("loads");
    let admin = load_admin(
        Some("apiVersion: gantry.dev/v1\nbuilds:\n  clusters: [build]\n  pod:\n    node_selector: { pool: builds }\n    service_account: builder\n    security: baseline\n"),
        &[],
    )
    .expect("admin file");
    let refused = guarded(on_prod, &admin).expect_err("prod is not a build cluster");
    assert_eq!(refused[0].field, "executor.kubernetes.cluster");
    assert!(
        refused[0]
            .message
            .contains("\"prod/gantry-builds\" is not a build cluster"),
        "{refused:?}"
    );
    // Nor another namespace of the build cluster (a production one there).
    let elsewhere = config(
        &BUILDS_ON_A_CLUSTER.replace("cluster: build", "cluster: build, namespace: payments"),
    )
    .expect("loads");
    let refused = guarded(elsewhere, &admin).expect_err("not the build namespace");
    assert!(
        refused[0].message.contains("\"build/payments\""),
        "{refused:?}"
    );
    let listed = load_admin(
        Some("apiVersion: gantry.dev/v1\nbuilds:\n  clusters: [build/payments]\n"),
        &[],
    )
    .unwrap();
    guarded(
        config(
            &BUILDS_ON_A_CLUSTER.replace("cluster: build", "cluster: build, namespace: payments"),
        )
        .expect("loads"),
        &listed,
    )
    .expect("listed with its namespace");
    assert!(
        guarded(
            config(BUILDS_ON_A_CLUSTER).expect("loads"),
            &load_admin(None, &[]).unwrap()
        )
        .is_err(),
        "no admin file: no build cluster"
    );
    let allowed =
        guarded(config(BUILDS_ON_A_CLUSTER).expect("loads"), &admin).expect("build is listed");
    assert_eq!(
        allowed.builds.pod.service_account.as_deref(),
        Some("builder")
    );
    assert_eq!(allowed.builds.pod.security, PodSecurity::Baseline);
    // pipeline.yaml has no say in them.
    let found = issues(
        APP,
        "apiVersion: gantry.dev/v1\nsteps:\n  - { name: a, run: x, service_account: admin }\n",
    );
    assert!(
        found.iter().any(|i| i.message.contains("service_account")),
        "{found:?}"
    );
    let bad = load_admin(
        Some("apiVersion: gantry.dev/v1\nbuilds:\n  pod: { security: privileged }\n"),
        &[],
    )
    .expect_err("unknown level");
    assert!(bad[0].message.contains("restricted or baseline"), "{bad:?}");
}

#[test]
fn a_cache_names_folders_inside_the_checkout() {
    let with = |cache: &str| {
        PIPELINE.replace(
            "reports: [reports/junit.xml]",
            &format!("reports: [reports/junit.xml]\n    cache: {cache}"),
        )
    };
    let config = load_app(
        "shop",
        Some(APP),
        Some(&with("[node_modules, vendor/bundle/]")),
        &[],
    )
    .expect("valid");
    let Step::Command(unit) = &config.pipeline.steps[1] else {
        panic!("a command")
    };
    assert_eq!(unit.cache, ["node_modules", "vendor/bundle"]);
    for bad in [
        "[../other-app]",
        "[/root/.cache]",
        "[.]",
        "[a/./b]",
        "[\"\"]",
    ] {
        let found = issues(APP, &with(bad));
        assert!(
            found.iter().any(|issue| issue.field == "steps[1].cache"
                && issue
                    .message
                    .contains("must be a folder inside the checkout")),
            "{bad}: {found:?}"
        );
    }
}

#[test]
fn promotion_names_an_upstream_environment_and_build_steps_are_marked() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    promote_from: staging\n    requires: { verified_in: staging, soak: 30m }\n",
    );
    let pipeline = PIPELINE.replace("run: \"make\" }", "run: \"make\", build: true }");
    let config = load_app("shop", Some(&app), Some(&pipeline), &[]).expect("valid");
    assert_eq!(config.stack[2].promote_from.as_deref(), Some("staging"));
    let requires = config.stack[2].requires.as_ref().expect("requires");
    assert_eq!(
        (requires.verified_in.as_str(), requires.soak_seconds),
        ("staging", 30 * 60)
    );
    let built: Vec<bool> = config
        .pipeline
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Command(step) => Some(step.build),
            Step::Deploy => None,
        })
        .collect();
    assert_eq!(built, [true, false, false]);

    // Unknown, itself, a preview, a preview upstream, a soak too long.
    let bad = APP
        .replace(
            "    target: local\n    ttl: 48h\n",
            "    target: local\n    ttl: 48h\n    promote_from: staging\n",
        )
        .replace(
            "    approval: { required: 2, roles: [admin] }\n",
            "    approval: { required: 2, roles: [admin] }\n    promote_from: stagign\n    requires: { verified_in: production, soak: 31d }\n",
        )
        .replace(
            "    branch: latest\n",
            "    branch: latest\n    promote_from: preview\n",
        );
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "stack[2].requires.soak",
            "stack[2].requires.verified_in",
            "stack[0].promote_from",
            "stack[1].promote_from",
            "stack[2].promote_from",
            "stack[2].requires.verified_in",
        ],
        "{found:?}"
    );
    assert!(
        found[1]
            .message
            .contains("differs from promote_from \"stagign\""),
        "{found:?}"
    );
    let found = &found[1..];
    assert!(
        found[1].message.contains("preview builds its own branch"),
        "{found:?}"
    );
    assert!(
        found[2]
            .message
            .contains("\"preview\" is not an environment"),
        "{found:?}"
    );
    assert!(
        found[3].message.contains("\"stagign\"") && found[3].message.contains("known: staging"),
        "{found:?}"
    );
    assert!(
        found[4].message.contains("is this entry itself"),
        "{found:?}"
    );
}

#[test]
fn a_canary_on_clusters_is_analysed_by_prometheus_not_the_local_proxy() {
    let canary = |targets: &str, analysis: &str| {
        APP.replace(
            "    approval: { required: 2, roles: [admin] }\n",
            &format!("    approval: {{ required: 2, roles: [admin] }}\n    targets: [{targets}]\n    strategy:\n      canary:\n        steps: [{{ weight: 20 }}, {{ analysis: {analysis} }}]\n"),
        )
    };
    let good = canary(
        "dev",
        "{ prometheus: { url: \"http://prometheus.monitoring:9090\", query: \"sum(rate(errors{namespace='{{ namespace }}'}[1m]))\", threshold: 0.05 } }",
    );
    let config = load_app("shop", Some(&good), Some(PIPELINE), &["dev".into()]).expect("valid");
    let crate::gitops::strategy::Strategy::Canary(plan) = &config.stack[2].strategy else {
        panic!("a canary")
    };
    let crate::gitops::strategy::CanaryStep::Analysis(analysis) = &plan.steps[1] else {
        panic!("an analysis")
    };
    let check = analysis.prometheus.as_ref().expect("a prometheus check");
    assert_eq!(
        (check.url.as_str(), check.threshold),
        ("http://prometheus.monitoring:9090", 0.05)
    );
    for (app, field, says) in [
        (
            canary("dev", "{ max_error_rate: 1% }"),
            "stack[2].strategy.canary.steps[1].analysis",
            "only the local target has",
        ),
        (
            canary("dev, local", "{ max_error_rate: 1% }"),
            "stack[2].strategy.canary",
            "not both",
        ),
        (
            canary("dev", "{ step: { run: ./smoke.sh } }"),
            "stack[2].strategy.canary.steps[1].analysis",
            "only the local target has",
        ),
        (
            canary(
                "dev",
                "{ prometheus: { url: \"http://admin:hunter2@prom:9090\", query: \"up\", threshold: 1 } }",
            ),
            "stack[2].strategy.canary.steps[1].analysis.prometheus.url",
            "no credentials",
        ),
        (
            canary(
                "dev",
                "{ prometheus: { url: \"http://prom:9090\", query: \"up\", threshold: high } }",
            ),
            "stack[2].strategy.canary.steps[1].analysis.prometheus.threshold",
            "a number, found \"high\"",
        ),
    ] {
        let found =
            load_app("shop", Some(&app), Some(PIPELINE), &["dev".into()]).expect_err("invalid");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, field, "{found:?}");
        assert!(found[0].message.contains(says), "{found:?}");
        assert!(!found[0].message.contains("hunter2"), "{found:?}");
    }
    let switch = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    targets: [dev]\n    strategy: { blue_green: { keep: 5m } }\n",
    );
    let found =
        load_app("shop", Some(&switch), Some(PIPELINE), &["dev".into()]).expect_err("clusters");
    assert_eq!(found[0].field, "stack[2].strategy.blue_green", "{found:?}");
    assert!(found[0].message.contains("use a `canary`"), "{found:?}");
    let local = switch.replace("targets: [dev]", "target: local");
    let config = load_app("shop", Some(&local), Some(PIPELINE), &[]).expect("valid");
    assert!(matches!(
        config.stack[2].strategy,
        crate::gitops::strategy::Strategy::BlueGreen(_)
    ));
}

#[test]
fn a_canary_is_read_and_its_problems_name_their_field() {
    let app = APP.replace(
        "    approval: { required: 2, roles: [admin] }\n",
        "    approval: { required: 2, roles: [admin] }\n    strategy:\n      canary:\n        steps: [{ weight: 10 }, { pause: 5m }, { weight: 50 }]\n",
    );
    let config = load_app("shop", Some(&app), Some(PIPELINE), &[]).expect("valid");
    assert!(matches!(
        config.stack[2].strategy,
        crate::gitops::strategy::Strategy::Canary(_)
    ));
    let bad = APP
        .replace(
            "    approval: { required: 2, roles: [admin] }\n",
            "    approval: { required: 2, roles: [admin] }\n    strategy: { canary: { steps: [{ weight: 50 }, { weight: 5 }] } }\n",
        )
        .replace(
            "    target: local\n    ttl: 48h\n",
            "    target: local\n    ttl: 48h\n    strategy: { canary: { steps: [{ weight: 5 }] } }\n",
        );
    let found = issues(&bad, PIPELINE);
    let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "stack[0].strategy.canary",
            "stack[2].strategy.canary.steps[1].weight"
        ],
        "{found:?}"
    );
    assert!(
        found[0].message.contains("a preview runs one version"),
        "{found:?}"
    );
    assert!(found[1].message.contains("weights only grow"), "{found:?}");
}

#[test]
fn the_image_step_is_a_build_with_a_repository_and_no_secrets_or_command() {
    let pipeline = PIPELINE.replace(
        "  - { name: build, run: \"make\" }\n",
        "  - image: { context: web, repository: registry.example.com/team/shop, credentials: REGISTRY }\n",
    );
    let config = load_app("shop", Some(APP), Some(&pipeline), &[]).expect("valid");
    let Step::Command(step) = &config.pipeline.steps[0] else {
        panic!("a command step");
    };
    assert_eq!(step.name, "image");
    assert!(step.build, "an image step builds the artifact");
    assert!(step.secrets.is_empty());
    let build = step.image_build.as_ref().expect("an image build");
    assert_eq!(
        (build.context.as_str(), build.dockerfile.as_str()),
        ("web", "web/Dockerfile")
    );
    assert_eq!(
        build.repository.to_string(),
        "registry.example.com/team/shop"
    );
    assert_eq!(build.credentials.as_deref(), Some("REGISTRY"));
    assert!(step.run.contains("buildah"), "{}", step.run);
    // Gantry builds it here, whatever executor the pipeline names.
    let elsewhere =
        crate::gitops::builds::Executor::Kubernetes(crate::gitops::builds::KubernetesExecutor {
            cluster: "builds".into(),
            namespace: "gantry-builds".into(),
            image: None,
        });
    assert_eq!(
        config.executor_of(step, &elsewhere),
        crate::gitops::builds::Executor::Local
    );

    // Each refusal names its field.
    for (bad, field, says) in [
        (
            "  - { name: img, image: { repository: registry.example.com/shop }, run: make }\n",
            "steps[0].run",
            "takes no `run`",
        ),
        (
            "  - image: { repository: registry.example.com/shop }\n    secrets: [NPM_TOKEN]\n",
            "steps[0].secrets",
            "an image step gets no secrets",
        ),
        (
            "  - image: { repository: registry.example.com/shop }\n    executor: local\n",
            "steps[0].executor",
            "takes no `executor`",
        ),
        (
            "  - image: { repository: shop }\n",
            "steps[0].image.repository",
            "names no registry",
        ),
        (
            "  - image: { repository: registry.example.com/shop:v1 }\n",
            "steps[0].image.repository",
            "gives a tag or a digest",
        ),
        (
            "  - image: { context: ../other, repository: registry.example.com/shop }\n",
            "steps[0].image.context",
            "must be a path inside the checkout",
        ),
        (
            "  - image: { dockerfile: /etc/passwd, repository: registry.example.com/shop }\n",
            "steps[0].image.dockerfile",
            "must be a path inside the checkout",
        ),
        (
            "  - image: { repository: registry.example.com/shop, credentials: \"a b\" }\n",
            "steps[0].image.credentials",
            "secret \"a b\"",
        ),
        (
            "  - image: { repository: registry.example.com/shop }\n    network: none\n",
            "steps[0].network",
            "builds on its own network",
        ),
        (
            "  - image: { repository: registry.example.com/shop }\n    network: host\n",
            "steps[0].network",
            "reaches nothing of the host's",
        ),
        (
            "  - image: { repository: registry.example.com/shop, tag: v1 }\n",
            "",
            "unknown field `tag`",
        ),
        (
            "  - { run: make }\n",
            "steps[0].name",
            "a step needs a `name`",
        ),
        (
            "  - { name: make }\n",
            "steps[0].run",
            "a step needs a `run`",
        ),
    ] {
        let pipeline = PIPELINE.replace("  - { name: build, run: \"make\" }\n", bad);
        let found = issues(APP, &pipeline);
        assert!(
            found
                .iter()
                .any(|i| (field.is_empty() || i.field == field) && i.message.contains(says)),
            "{bad}: {found:?}"
        );
    }
}

#[test]
fn an_analysis_step_is_a_command_with_a_timeout() {
    let canary = |analysis: &str| {
        APP.replace(
            "    approval: { required: 2, roles: [admin] }\n",
            &format!("    approval: {{ required: 2, roles: [admin] }}\n    strategy:\n      canary:\n        steps: [{{ weight: 20 }}, {{ analysis: {analysis} }}]\n"),
        )
    };
    let good = canary("{ step: { run: \"curl -fsS $CANARY_URL\", timeout: 20s } }");
    let config = load_app("shop", Some(&good), Some(PIPELINE), &[]).expect("valid");
    let crate::gitops::strategy::Strategy::Canary(plan) = &config.stack[2].strategy else {
        panic!("a canary")
    };
    let crate::gitops::strategy::CanaryStep::Analysis(analysis) = &plan.steps[1] else {
        panic!("an analysis")
    };
    let step = analysis.step.as_ref().expect("a step");
    assert_eq!(
        (step.run.as_str(), step.timeout_seconds),
        ("curl -fsS $CANARY_URL", 20)
    );
    assert!(
        !analysis.measures_requests(),
        "a step alone measures no requests"
    );
    for (analysis, field, says) in [
        (
            "{ step: { run: \"\" } }",
            "step.run",
            "expected the command",
        ),
        (
            "{ step: { run: ./smoke.sh, timeout: 1h } }",
            "step.timeout",
            "from 1s to 10m",
        ),
        (
            "{ step: { run: ./smoke.sh, image: x } }",
            "step.image",
            "unknown field `image`",
        ),
        ("{ step: ./smoke.sh }", "step", "expected a mapping"),
    ] {
        let found =
            load_app("shop", Some(&canary(analysis)), Some(PIPELINE), &[]).expect_err(analysis);
        assert!(
            found
                .iter()
                .any(|i| i.field.ends_with(field) && i.message.contains(says)),
            "{analysis}: {found:?}"
        );
    }
}

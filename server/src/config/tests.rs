use super::*;
use crate::git::redact_source;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("custom.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn defaults_apply_without_any_layer() {
    let config = Config::resolve(&Flags::default(), &[]).expect("defaults resolve");
    assert_eq!(
        config.bind,
        "127.0.0.1:3000".parse::<SocketAddr>().expect("addr")
    );
    assert!(config.data_dir.is_absolute());
    assert!(config.data_dir.ends_with(".gantry"));
    assert_eq!(
        config.database,
        DatabaseTarget::Sqlite(config.data_dir.join("gantry.db"))
    );
    assert_eq!(config.origin("server.bind"), Some(&Origin::Default));
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(
        dir.path(),
        "[server]\nbind = \"127.0.0.1:4000\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n",
    );
    let flags = Flags {
        config: Some(file.clone()),
        ..Flags::default()
    };

    let only_file = Config::resolve(&flags, &[]).expect("resolves");
    assert_eq!(only_file.bind.port(), 4000);
    assert_eq!(
        only_file.origin("server.bind"),
        Some(&Origin::File(file.clone()))
    );
    assert_eq!(only_file.log_format, LogFormat::Json);

    let with_env =
        Config::resolve(&flags, &env(&[("GANTRY_BIND", "127.0.0.1:5000")])).expect("resolves");
    assert_eq!(with_env.bind.port(), 5000);
    assert_eq!(
        with_env.origin("server.bind"),
        Some(&Origin::Env("GANTRY_BIND"))
    );
    assert_eq!(
        with_env.log_filter, "debug",
        "untouched keys keep the file's value"
    );

    let with_flag = Config::resolve(
        &Flags {
            bind: Some("127.0.0.1:6000".parse().expect("addr")),
            ..flags
        },
        &env(&[("GANTRY_BIND", "127.0.0.1:5000")]),
    )
    .expect("resolves");
    assert_eq!(with_flag.bind.port(), 6000);
    assert_eq!(
        with_flag.origin("server.bind"),
        Some(&Origin::Flag("--bind"))
    );
}

#[test]
fn paths_in_the_file_are_relative_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[storage]\ndata_dir = \"state\"\n");
    let config = Config::resolve(
        &Flags {
            config: Some(file),
            ..Flags::default()
        },
        &[],
    )
    .expect("resolves");
    assert_eq!(config.data_dir, dir.path().join("state"));
}

#[test]
fn an_unknown_key_names_the_key_the_file_and_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(
        dir.path(),
        "[server]\nbind = \"127.0.0.1:3000\"\n\n[storage]\ndata_dri = \"x\"\n",
    );
    let error = Config::resolve(
        &Flags {
            config: Some(file.clone()),
            ..Flags::default()
        },
        &[],
    )
    .expect_err("unknown key refused");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("config file {}, line 5:", file.display())),
        "{text}"
    );
    assert!(text.contains("unknown field `data_dri`"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn an_unknown_section_is_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[sever]\nbind = \"127.0.0.1:3000\"\n");
    let error = Config::resolve(
        &Flags {
            config: Some(file),
            ..Flags::default()
        },
        &[],
    )
    .expect_err("refused");
    assert!(
        error.to_string().contains("unknown field `sever`"),
        "{error}"
    );
}

#[test]
fn a_value_of_the_wrong_type_in_the_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[server]\nmax_body_bytes = \"lots\"\n");
    let error = Config::resolve(
        &Flags {
            config: Some(file),
            ..Flags::default()
        },
        &[],
    )
    .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("max_body_bytes"), "{text}");
}

#[test]
fn bad_values_name_the_key_value_and_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[server]\nbind = \"everywhere\"\n");
    let error = Config::resolve(
        &Flags {
            config: Some(file.clone()),
            ..Flags::default()
        },
        &[],
    )
    .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "invalid value \"everywhere\" for server.bind (from file {}): expected an address like 127.0.0.1:3000",
            file.display()
        )
    );

    let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_LOG_FORMAT", "xml")]))
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid value \"xml\" for log.format (from environment GANTRY_LOG_FORMAT): expected `text` or `json`"
    );

    let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_MAX_BODY_BYTES", "0")]))
        .expect_err("refused");
    assert!(
        error.to_string().contains("server.max_body_bytes"),
        "{error}"
    );

    let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_LOG", "info,[[")]))
        .expect_err("refused");
    assert!(error.to_string().contains("log.level"), "{error}");

    let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_RUNNER_LEASE", "1s")]))
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid value \"1s\" for runner.lease (from environment GANTRY_RUNNER_LEASE): expected at least 3s: the lease is renewed every third of it"
    );
    let config = Config::resolve(&Flags::default(), &[]).expect("defaults resolve");
    assert_eq!(config.runner_lease, std::time::Duration::from_secs(30));
    assert_eq!(
        config.local_replica, None,
        "any replica runs local by default"
    );
    assert!(!config.replica.is_empty());

    for hostile in ["../etc", "a b", "", "x;rm -rf /"] {
        let error = Config::resolve(
            &Flags::default(),
            &env(&[("GANTRY_RUNNER_REPLICA", hostile)]),
        )
        .expect_err("refused");
        assert!(
            error.to_string().contains("for runner.replica (from environment GANTRY_RUNNER_REPLICA): expected a replica name"),
            "{error}"
        );
    }
    let error = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_RUNNER_LOCAL_REPLICA", "a/b")]),
    )
    .expect_err("refused");
    assert!(
        error.to_string().contains("runner.local_replica"),
        "{error}"
    );
    let config = Config::resolve(
        &Flags::default(),
        &env(&[
            ("GANTRY_RUNNER_REPLICA", "gantry-1"),
            ("GANTRY_RUNNER_LOCAL_REPLICA", "gantry-0"),
        ]),
    )
    .expect("names resolve");
    assert_eq!(
        (config.replica.as_str(), config.local_replica.as_deref()),
        ("gantry-1", Some("gantry-0"))
    );
}

#[test]
fn an_explicit_config_file_must_exist() {
    let error = Config::resolve(
        &Flags {
            config: Some(PathBuf::from("/nonexistent/gantry.toml")),
            ..Flags::default()
        },
        &[],
    )
    .expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("cannot read config file /nonexistent/gantry.toml"),
        "{error}"
    );
}

#[test]
fn unknown_gantry_variables_are_refused_and_others_ignored() {
    let error =
        Config::resolve(&Flags::default(), &env(&[("GANTRY_BINDD", "x")])).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("unknown environment variable GANTRY_BINDD;"),
        "{error}"
    );
    Config::resolve(
        &Flags::default(),
        &env(&[("HOME", "/root"), ("RUST_LOG", "x")]),
    )
    .expect("unrelated vars are fine");
}

#[test]
fn database_urls_pick_the_backend_and_never_show_passwords() {
    let config = Config::resolve(
        &Flags::default(),
        &env(&[(
            "DATABASE_URL",
            "postgres://gantry:s3cret@db.internal:5432/gantry",
        )]),
    )
    .expect("resolves");
    assert_eq!(
        config.database,
        DatabaseTarget::Postgres("postgres://gantry:s3cret@db.internal:5432/gantry".into())
    );
    let shown = &config
        .sources
        .iter()
        .find(|(key, _, _)| *key == "storage.database_url")
        .expect("listed")
        .1;
    assert_eq!(shown, "postgres://gantry:***@db.internal:5432/gantry");

    assert_eq!(
        DatabaseTarget::parse("sqlite:///var/lib/gantry/g.db"),
        Ok(DatabaseTarget::Sqlite("/var/lib/gantry/g.db".into()))
    );
    assert_eq!(
        DatabaseTarget::parse("sqlite:relative.db?mode=rwc"),
        Ok(DatabaseTarget::Sqlite("relative.db".into()))
    );

    let error = Config::resolve(
        &Flags::default(),
        &env(&[("DATABASE_URL", "mysql://root:pw@x/db")]),
    )
    .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("storage.database_url") && text.contains("environment DATABASE_URL"),
        "{text}"
    );
    assert!(!text.contains(":pw@"), "password hidden: {text}");
}

#[test]
fn the_sandbox_is_on_unless_turned_off_by_name() {
    let config = Config::resolve(&Flags::default(), &[]).expect("defaults");
    assert!(config.sandbox);
    assert_eq!(config.runner_user, (65534, 65534));
    let off = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_RUNNER_SANDBOX", "none")]),
    )
    .expect("none is accepted");
    assert!(!off.sandbox);
    let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_RUNNER_SANDBOX", "off")]))
        .expect_err("only bwrap or none");
    assert!(error.to_string().contains("runner.sandbox"), "{error}");
    for root in ["0:0", "0", "root", "1000:0"] {
        let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_RUNNER_USER", root)]))
            .expect_err("root is refused");
        assert!(
            error.to_string().contains("must not run as root"),
            "{root}: {error}"
        );
    }
    let named = Config::resolve(&Flags::default(), &env(&[("GANTRY_RUNNER_USER", "nobody")]))
        .expect("a user name");
    assert_eq!(named.runner_user, (65534, 65534));
    let error = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_RUNNER_READ_ONLY_PATHS", "/opt/sdk,relative/dir")]),
    )
    .expect_err("relative paths are refused");
    assert!(
        error
            .to_string()
            .contains("relative/dir is not an absolute path"),
        "{error}"
    );
}

#[test]
fn previews_get_their_own_domain_and_only_listed_proxies_are_trusted() {
    let config = Config::resolve(&Flags::default(), &[]).expect("defaults");
    assert_eq!(config.preview_domain, "localhost");
    assert!(config.trusted_proxies.is_empty());
    let by_ip = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_PUBLIC_URL", "http://127.0.0.1:3000/")]),
    )
    .expect("resolves");
    assert_eq!(
        by_ip.preview_domain, "localhost",
        "no hosts exist under an IP address"
    );
    let named = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_PUBLIC_URL", "https://gantry.example.com/")]),
    )
    .expect("resolves");
    assert_eq!(named.preview_domain, "gantry.example.com");
    let config = Config::resolve(
        &Flags::default(),
        &env(&[
            ("GANTRY_PREVIEW_DOMAIN", "*.Preview.Example-Usercontent.com"),
            ("GANTRY_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
        ]),
    )
    .expect("resolves");
    assert_eq!(config.preview_domain, "preview.example-usercontent.com");
    let [net, loopback] = config.trusted_proxies[..] else {
        panic!("two proxies: {:?}", config.trusted_proxies)
    };
    assert!(net.contains("10.1.2.3".parse().expect("ip")));
    assert!(!net.contains("11.1.2.3".parse().expect("ip")));
    assert!(
        net.contains("::ffff:10.9.9.9".parse().expect("ip")),
        "mapped IPv4"
    );
    assert!(loopback.contains("::1".parse().expect("ip")));
    assert!(!loopback.contains("127.0.0.1".parse().expect("ip")));
    for bad in ["evil.com/x", "a..b", "bad domain"] {
        let error = Config::resolve(&Flags::default(), &env(&[("GANTRY_PREVIEW_DOMAIN", bad)]))
            .expect_err("refused");
        assert!(
            error.to_string().contains("server.preview_domain"),
            "{error}"
        );
    }
    let error = Config::resolve(
        &Flags::default(),
        &env(&[("GANTRY_TRUSTED_PROXIES", "10.0.0.0/33")]),
    )
    .expect_err("refused");
    assert!(error.to_string().contains("prefix length"), "{error}");
}

#[test]
fn git_urls_lose_their_credentials_when_shown() {
    assert_eq!(
        redact_source("https://ghp_abc123@github.com/acme/shop.git"),
        "https://***@github.com/acme/shop.git"
    );
    assert_eq!(
        redact_source("https://ci:s3cret@git.example.com/shop"),
        "https://***@git.example.com/shop"
    );
    assert_eq!(
        redact_source("https://github.com/acme/shop"),
        "https://github.com/acme/shop"
    );
    assert_eq!(redact_source("/srv/git/shop.git"), "/srv/git/shop.git");
    assert_eq!(
        redact_source("git@github.com:acme/shop.git"),
        "git@github.com:acme/shop.git"
    );
    let shown = Config::resolve(
        &Flags::default(),
        &env(&[(
            "GANTRY_PIPELINE_REPO",
            "https://oauth2:tok@gitlab.example.com/ops/pipelines.git",
        )]),
    )
    .expect("resolves");
    let entry = shown
        .sources
        .iter()
        .find(|(k, _, _)| *k == "pipeline.repo")
        .expect("entry");
    assert_eq!(entry.1, "https://***@gitlab.example.com/ops/pipelines.git");
}

#[test]
fn a_preview_domain_under_the_dashboards_is_warned_about() {
    let config = |public: &str, preview: Option<&str>| {
        let mut env = vec![("GANTRY_PUBLIC_URL", public)];
        if let Some(preview) = preview {
            env.push(("GANTRY_PREVIEW_DOMAIN", preview));
        }
        Config::resolve(&Flags::default(), &self::env(&env)).expect("resolves")
    };
    let warn = |c: &Config| crate::state::preview_domain_warning(c);
    assert!(
        warn(&config("http://localhost:3000/", None)).is_none(),
        "the demo"
    );
    assert!(warn(&config("https://gantry.example.com/", None)).is_some());
    assert!(
        warn(&config(
            "https://gantry.example.com/",
            Some("gantry.example.com")
        ))
        .is_some()
    );
    assert!(warn(&config("https://gantry.example.com/", Some("example.com"))).is_some());
    assert!(
        warn(&config(
            "https://gantry.example.com/",
            Some("preview.example-usercontent.com")
        ))
        .is_none()
    );
}

#[test]
fn the_isolation_settings_are_read_and_checked() {
    let config = Config::resolve(
        &Flags::default(),
        &env(&[
            ("GANTRY_RUNNER_UIDS", "200000-200999"),
            (
                "GANTRY_RUNNER_BLOCKED_NETWORKS",
                "10.20.0.0/16, 2001:db8::1",
            ),
            ("GANTRY_ALLOWED_HOSTS", "Gantry.Internal, ci.local"),
            ("GANTRY_FORGE_LOGIN_CLAIM", "preferred_username"),
            ("GANTRY_GIT_EXPORT_MAX_BYTES", "1048576"),
        ]),
    )
    .expect("resolves");
    assert_eq!(config.runner_uids, (200_000, 200_999));
    assert_eq!(
        config.runner_blocked_networks,
        ["10.20.0.0/16", "2001:db8::1/128"]
    );
    assert_eq!(config.allowed_hosts, ["gantry.internal", "ci.local"]);
    assert_eq!(
        config.forge_login_claim.as_deref(),
        Some("preferred_username")
    );
    assert_eq!(config.git_export_limits.max_bytes, 1_048_576);
    let defaults = Config::resolve(&Flags::default(), &env(&[])).expect("defaults");
    assert_eq!(
        defaults.forge_login_claim, None,
        "no forge account is anyone's by default"
    );
    assert!(defaults.runner_uids.0 > 0 && defaults.runner_uids.1 > defaults.runner_uids.0);
    for (name, bad, key) in [
        ("GANTRY_RUNNER_UIDS", "0-10", "runner.uids"),
        (
            "GANTRY_RUNNER_BUILD_UIDS",
            "1500000000-1500131071",
            "runner.build_uids",
        ),
        (
            "GANTRY_RUNNER_BUILD_UIDS",
            "1600000000-1600000100",
            "runner.build_uids",
        ),
        ("GANTRY_RUNNER_UIDS", "20-10", "runner.uids"),
        (
            "GANTRY_RUNNER_BLOCKED_NETWORKS",
            "10.0.0.0/40",
            "runner.blocked_networks",
        ),
        (
            "GANTRY_ALLOWED_HOSTS",
            "evil.example/x",
            "server.allowed_hosts",
        ),
        ("GANTRY_GIT_EXPORT_MAX_DEPTH", "0", "git.export_max_depth"),
    ] {
        let error = Config::resolve(&Flags::default(), &env(&[(name, bad)])).expect_err(bad);
        assert!(error.to_string().contains(key), "{name}={bad}: {error}");
    }
}

/// What `gantry demo` sets after reading the layers is recorded as its, so
/// Settings never says "false (default)" of a value in effect as true.
#[test]
fn a_value_the_demo_sets_is_recorded_as_the_demos() {
    let mut config = Config::resolve(&Flags::default(), &[]).expect("defaults resolve");
    assert_eq!(config.origin("auth.dev_login"), Some(&Origin::Default));
    config.set_by_demo("auth.dev_login", "true".into());
    assert_eq!(config.origin("auth.dev_login"), Some(&Origin::Demo));
    let shown: Vec<_> = config
        .sources
        .iter()
        .filter(|(k, _, _)| *k == "auth.dev_login")
        .collect();
    assert_eq!(shown.len(), 1, "one line per setting");
    assert_eq!(shown[0].1, "true");
    assert_eq!(shown[0].2.to_string(), "gantry demo");
}

//! The `gantry` command line.

use crate::error::Rejected;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Flags, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    about = "GitOps CI/CD: pipelines, environment stacks, approvals and a release ledger",
    long_about = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command accepts. Flags override environment variables,
/// which override the config file, which overrides the defaults.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Default: ./gantry.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3000].
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// The URL people reach Gantry at [default: http://localhost:<port>/].
    #[arg(long, global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// The pipeline repo: a git URL or a local path.
    #[arg(long, global = true, value_name = "REPO")]
    pub pipeline_repo: Option<String>,
    /// Data directory [default: ./.gantry, or $GANTRY_DATA].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://… or sqlite:… [default: SQLite in the data directory].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log filter, e.g. `info` or `gantry=debug,tower_http=info`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// Allow the demo's password-less sign-in (loopback binds only).
    #[arg(long, global = true)]
    pub dev_login: bool,
    /// Log format.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
}

fn parse_log_format(text: &str) -> Result<LogFormat, Rejected> {
    text.parse().map_err(Rejected)
}

impl GlobalArgs {
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            bind: self.bind,
            public_url: self.public_url.clone(),
            pipeline_repo: self.pipeline_repo.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            log: self.log.clone(),
            log_format: self.log_format,
            dev_login: self.dev_login,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the dashboard and the API.
    Serve,
    /// Run the demo: Gantry with the embedded defaults (SQLite, local target).
    Demo,
    /// Apply database migrations and exit.
    Migrate,
    /// Register and manage Kubernetes clusters (talks to a running Gantry).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Change requests: open, list, show, approve, reject, close (talks to a
    /// running Gantry with GANTRY_TOKEN).
    #[command(subcommand)]
    Cr(ChangeRequestCommand),
    /// Roll an environment back to its last stable release (or `--to`),
    /// re-applying the stored manifests, and pin it (admins; talks to a
    /// running Gantry with GANTRY_TOKEN).
    Rollback {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
        /// The release number to go back to.
        #[arg(long)]
        to: Option<i64>,
        /// Why (required): kept in the ledger, the pin and the audit log.
        #[arg(long)]
        reason: String,
        /// Return once the rollback is queued instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Unpin an environment and deploy its branch head (admins).
    Promote {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The release ledger of an app, newest first.
    Releases {
        app: String,
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Re-encrypt every secret, cluster credential and sealed manifest with
    /// a new key (Gantry must be stopped).
    RotateKey,
    /// API tokens for the CLI and automation (works on the database
    /// directly, so it can create the first admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// What runs inside a build pod beside the step (Gantry's image is
    /// the helper image): fetch the workspace, send it back.
    #[command(subcommand, hide = true)]
    BuildHelper(crate::build_helper::BuildHelper),
    /// Print the health Gantry reads for each object in a YAML file (as
    /// `kubectl get -o yaml` prints them), with the health rules of a
    /// pipeline repo checkout: test a rule before committing it.
    Health {
        /// One or more objects (multi-document YAML, or a List).
        file: std::path::PathBuf,
        /// A pipeline repo checkout: its gantry.yaml `health:` rules and
        /// health/<group>/<Kind>/health.lua scripts.
        #[arg(long)]
        rules: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChangeRequestCommand {
    /// Propose merging a branch (into latest by default; latest into master).
    Open {
        #[arg(long)]
        app: String,
        /// The branch to merge.
        #[arg(long)]
        source: String,
        /// The environment branch to merge into.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Every change request, open ones first.
    List,
    /// One request: approvals, preview, freeze, decisions.
    Show { id: i64 },
    /// Approve the request's current commit.
    Approve {
        id: i64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject the request.
    Reject {
        id: i64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Withdraw the request (its author or an admin).
    Close { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        /// What the token is for, e.g. `ci` or `laptop`.
        #[arg(long)]
        name: String,
        /// admin, developer, tester or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Limit the token to one app.
        #[arg(long)]
        app: Option<String>,
        /// How long the token lives, e.g. 30d.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// The user the token acts as (created if missing).
        #[arg(long, default_value = "admin")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster: from a kubeconfig, a server URL and token, or in-cluster.
    Add {
        name: String,
        /// A kubeconfig file.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["api_server", "in_cluster"])]
        kubeconfig: Option<PathBuf>,
        /// The kubeconfig context to use (default: its current context).
        #[arg(long, requires = "kubeconfig")]
        context: Option<String>,
        /// The cluster's API server URL (with --token-file).
        #[arg(
            long,
            value_name = "URL",
            requires = "token_file",
            conflicts_with = "in_cluster"
        )]
        api_server: Option<String>,
        /// A file holding the bearer token.
        #[arg(long, value_name = "FILE", requires = "api_server")]
        token_file: Option<PathBuf>,
        /// A PEM file with the API server's CA bundle.
        #[arg(long, value_name = "FILE", requires = "api_server")]
        ca_file: Option<PathBuf>,
        /// Skip TLS verification (testing only).
        #[arg(long, requires = "api_server")]
        insecure: bool,
        /// Use the service account Gantry runs under.
        #[arg(long)]
        in_cluster: bool,
    },
    /// List registered clusters and their last check.
    List,
    /// Check a cluster's connectivity now.
    Check { name: String },
    /// Remove a cluster no app targets.
    Remove { name: String },
}

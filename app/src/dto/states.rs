//! The states of environments, runs, steps, deployments, change requests,
//! releases and clusters: one stable name each, shared by the database, the
//! API and CSS classes.

use super::*;

state_enum! {
    /// Where an environment of the stack stands.
    EnvironmentState {
        Pending => "pending",
        Deploying => "deploying",
        Live => "live",
        Failed => "failed",
        PartiallyFailed => "partially_failed",
        Destroying => "destroying",
        Destroyed => "destroyed",
    }
}

state_enum! {
    /// The life of one pipeline run.
    RunState {
        Queued => "queued",
        WaitingForApproval => "waiting_for_approval",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Superseded => "superseded",
    }
}

state_enum! {
    /// One step of a run.
    StepState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Skipped => "skipped",
    }
}

state_enum! {
    /// A deployment of one commit to one environment (and each of its targets).
    DeploymentState {
        Deploying => "deploying",
        Succeeded => "succeeded",
        Failed => "failed",
        PartiallyFailed => "partially_failed",
    }
}

state_enum! {
    /// A request to merge a source branch into a target branch.
    ChangeRequestState {
        Open => "open",
        Approved => "approved",
        Conflict => "conflict",
        Merged => "merged",
        Rejected => "rejected",
        Closed => "closed",
    }
}

state_enum! {
    /// A production release in the ledger.
    ReleaseState {
        Deploying => "deploying",
        Live => "live",
        Stable => "stable",
        Failed => "failed",
        RolledBack => "rolled_back",
        Superseded => "superseded",
        Aborted => "aborted",
    }
}

state_enum! {
    /// The last connectivity check of a registered cluster.
    ClusterState {
        Unknown => "unknown",
        Reachable => "reachable",
        Unreachable => "unreachable",
    }
}

state_enum! {
    /// What put an entry in the ledger.
    ReleaseKind {
        Release => "release",
        Rollback => "rollback",
    }
}

state_enum! {
    /// Where an artifact stands against an environment's `requires`.
    GateState {
        Passed => "passed",
        Soaking => "soaking",
        Unverified => "unverified",
        Rejected => "rejected",
    }
}

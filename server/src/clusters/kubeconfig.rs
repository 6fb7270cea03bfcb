//! What a pasted kubeconfig may hold. A kubeconfig can name files to read
//! (`certificate-authority`, `client-certificate`, `client-key`,
//! `tokenFile`) and commands to run (`exec`, `auth-provider`); read on the
//! Gantry server, those would read its files and run programs as Gantry —
//! and their errors would print its paths. Gantry takes only
//! self-contained kubeconfigs: certificates, keys and tokens inline.

use kube::config::Kubeconfig;

/// Why `kubeconfig` is not self-contained, naming the entry and field;
/// `None` when it is.
pub fn refusal(kubeconfig: &Kubeconfig) -> Option<String> {
    const INLINE: &str = "paste its contents inline instead (the `-data` field, or `token`): Gantry never reads files or runs commands a kubeconfig names";
    for named in &kubeconfig.clusters {
        let Some(cluster) = &named.cluster else {
            continue;
        };
        if cluster.certificate_authority.is_some() {
            return Some(format!(
                "cluster {:?} reads certificate-authority from a file; {INLINE}",
                named.name
            ));
        }
    }
    for named in &kubeconfig.auth_infos {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let field = if user.exec.is_some() {
            "exec (a command to run)"
        } else if user.auth_provider.is_some() {
            "auth-provider (a plugin to run)"
        } else if user.token_file.is_some() {
            "tokenFile (a file)"
        } else if user.client_certificate.is_some() {
            "client-certificate (a file)"
        } else if user.client_key.is_some() {
            "client-key (a file)"
        } else {
            continue;
        };
        return Some(format!("user {:?} uses {field}; {INLINE}", named.name));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(user: &str, cluster: &str) -> Kubeconfig {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: x\n  context: {{ cluster: c, user: u }}\ncurrent-context: x\n"
        );
        Kubeconfig::from_yaml(&text).unwrap()
    }

    #[test]
    fn inline_credentials_pass() {
        let inline = parsed(
            "    token: abc\n    client-certificate-data: Zm9v\n    client-key-data: YmFy\n",
            "    certificate-authority-data: Zm9v\n",
        );
        assert_eq!(refusal(&inline), None);
    }

    #[test]
    fn files_and_commands_are_refused_by_name() {
        let cases = [
            (
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [\"-c\", \"touch /tmp/pwned\"]\n",
                "",
                "exec",
            ),
            ("    auth-provider:\n      name: gcp\n", "", "auth-provider"),
            ("    tokenFile: /etc/shadow\n", "", "tokenFile"),
            (
                "    client-certificate: /root/cert.pem\n",
                "",
                "client-certificate",
            ),
            ("    client-key: /root/.ssh/id_rsa\n", "", "client-key"),
            (
                "    token: abc\n",
                "    certificate-authority: /etc/ssl/private/ca.pem\n",
                "certificate-authority",
            ),
        ];
        for (user, cluster, field) in cases {
            let why = refusal(&parsed(user, cluster)).unwrap_or_default();
            assert!(why.contains(field), "{field}: {why}");
            assert!(why.contains("never reads files or runs commands"), "{why}");
            assert!(
                !why.contains("/etc") && !why.contains("/root"),
                "no path echoed: {why}"
            );
        }
    }
}

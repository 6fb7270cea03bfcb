//! What each kind of channel receives for one notice: a DingTalk robot's
//! markdown message (with @mentions, and the `timestamp` + `sign` query
//! parameters when the robot has a signing secret), a WeCom group robot's
//! markdown, a Slack incoming webhook's blocks, or a generic webhook's JSON signed with HMAC-SHA256.

use base64::Engine;
use serde_json::{Value, json};

use super::{ChannelKind, Notice};

/// One HTTP request to make.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub url: String,
    pub body: Value,
    /// Extra headers (the generic webhook's signature).
    pub headers: Vec<(String, String)>,
}

/// The markdown text of a notice (DingTalk and Slack differ only in links).
fn lines(notice: &Notice, link: impl Fn(&str, &str) -> String) -> String {
    let mut text = format!("{}\n\n{}", notice.title, notice.text);
    if let Some(url) = &notice.url {
        text.push_str(&format!("\n\n{}", link("Open", url)));
    }
    text
}

/// DingTalk's signature: base64(HMAC-SHA256(secret, "<timestamp>\n<secret>")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn render(
    kind: ChannelKind,
    url: &str,
    secret: Option<&str>,
    mentions: &[String],
    notice: &Notice,
    now_ms: i64,
) -> Outgoing {
    match kind {
        ChannelKind::DingTalk => {
            let mut text = lines(notice, |label, url| format!("[{label}]({url})"));
            if !mentions.is_empty() {
                text.push_str("\n\n");
                text.push_str(
                    &mentions
                        .iter()
                        .map(|m| format!("@{m}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            let url = match secret {
                Some(secret) => {
                    let sign = dingtalk_sign(secret, now_ms);
                    let query: String = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("timestamp", &now_ms.to_string())
                        .append_pair("sign", &sign)
                        .finish();
                    let separator = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{separator}{query}")
                }
                None => url.to_string(),
            };
            Outgoing {
                url,
                body: json!({
                    "msgtype": "markdown",
                    "markdown": { "title": notice.title, "text": text },
                    "at": { "atMobiles": mentions, "isAtAll": false },
                }),
                headers: Vec::new(),
            }
        }
        // WeCom's group robot: markdown, mentions as `<@userid>`; the key is
        // in the URL, there is no signature.
        ChannelKind::WeCom => {
            let mut content = lines(notice, |label, url| format!("[{label}]({url})"));
            if !mentions.is_empty() {
                content.push_str("\n\n");
                content.push_str(
                    &mentions
                        .iter()
                        .map(|m| format!("<@{m}>"))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            Outgoing {
                url: url.to_string(),
                body: json!({ "msgtype": "markdown", "markdown": { "content": content } }),
                headers: Vec::new(),
            }
        }
        ChannelKind::Slack => {
            let text = lines(notice, |label, url| format!("<{url}|{label}>"));
            Outgoing {
                url: url.to_string(),
                body: json!({
                    "text": notice.title,
                    "blocks": [
                        { "type": "header", "text": { "type": "plain_text", "text": notice.title } },
                        { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                        { "type": "context", "elements": [
                            { "type": "mrkdwn", "text": format!("{} · {} · {}", notice.app, notice.environment, notice.event.as_str()) }
                        ] }
                    ],
                }),
                headers: Vec::new(),
            }
        }
        // Email is not HTTP: `email` below builds it; this is its JSON
        // form, for the log.
        ChannelKind::Webhook | ChannelKind::Email => {
            let body = json!({
                "event": notice.event.as_str(),
                "subject": notice.subject,
                "app": notice.app,
                "environment": notice.environment,
                "title": notice.title,
                "text": notice.text,
                "url": notice.url,
            });
            let headers = secret
                .map(|secret| {
                    vec![(
                        "x-gantry-signature".to_string(),
                        format!(
                            "sha256={}",
                            crate::forge::webhook::sign(secret, body.to_string().as_bytes())
                        ),
                    )]
                })
                .unwrap_or_default();
            Outgoing {
                url: url.to_string(),
                body,
                headers,
            }
        }
    }
}

/// An email's subject, plain text and HTML parts.
pub fn email(notice: &Notice) -> (String, String, String) {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let text = lines(notice, |label, url| format!("{label}: {url}"));
    let mut html = format!(
        "<h2>{}</h2>\n<p>{}</p>\n",
        escape(&notice.title),
        escape(&notice.text).replace('\n', "<br>")
    );
    if let Some(url) = &notice.url {
        html.push_str(&format!("<p><a href=\"{}\">Open</a></p>\n", escape(url)));
    }
    (notice.title.clone(), text, html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;

    fn notice() -> Notice {
        Notice {
            event: Event::RunFailed,
            app: "shop".into(),
            environment: "staging".into(),
            subject: "run:42".into(),
            title: "shop staging: run 42 failed".into(),
            text: "Step unit failed (exit 1) on 4f2a9c1 \"Faster checkout\" by Ada.".into(),
            url: Some("http://gantry.example.com/runs/42".into()),
        }
    }

    #[test]
    fn messages_per_channel_kind() {
        let mentions = vec!["13800000000".to_string()];
        let at = 1_790_000_000_000;
        insta::assert_json_snapshot!(
            "dingtalk",
            render(
                ChannelKind::DingTalk,
                "https://oapi.dingtalk.com/robot/send?access_token=t",
                Some("SEC1"),
                &mentions,
                &notice(),
                at
            )
            .body
        );
        insta::assert_json_snapshot!(
            "slack",
            render(
                ChannelKind::Slack,
                "https://hooks.slack.com/services/x",
                None,
                &[],
                &notice(),
                at
            )
            .body
        );
        insta::assert_json_snapshot!(
            "wecom",
            render(
                ChannelKind::WeCom,
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
                None,
                &["ada".to_string()],
                &notice(),
                at
            )
            .body
        );
        insta::assert_json_snapshot!(
            "webhook",
            render(
                ChannelKind::Webhook,
                "http://example.com/hook",
                Some("k"),
                &[],
                &notice(),
                at
            )
            .body
        );
    }

    #[test]
    fn emails_have_a_text_and_an_escaped_html_part() {
        let mut notice = notice();
        notice.text = "<b>not bold</b> & more".into();
        let (subject, text, html) = email(&notice);
        assert_eq!(subject, "shop staging: run 42 failed");
        assert!(
            text.contains("<b>not bold</b> & more")
                && text.contains("Open: http://gantry.example.com/runs/42")
        );
        insta::assert_snapshot!("email_html", html);
    }

    #[test]
    fn dingtalk_urls_carry_the_timestamp_and_signature() {
        let out = render(
            ChannelKind::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            Some("SEC1"),
            &[],
            &notice(),
            1_790_000_000_000,
        );
        let sign = dingtalk_sign("SEC1", 1_790_000_000_000);
        let expected: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sign", &sign)
            .finish();
        assert!(out.url.starts_with(
            "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1790000000000&"
        ));
        assert!(out.url.ends_with(&expected), "{}", out.url);
    }
}

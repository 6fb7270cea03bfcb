//! What each kind of channel receives for one notice: a DingTalk robot's
//! markdown message (with @mentions, and the `timestamp` + `sign` query
//! parameters when the robot has a signing secret), a WeCom group robot's
//! markdown, a Slack incoming webhook's blocks, or a generic webhook's JSON signed with HMAC-SHA256.
//!
//! A notice quotes what anyone may write — branch names, request titles,
//! commit messages — so in a channel with markup it is made inert first
//! ([`inert`]): no `<!channel>`, no link that says one thing and goes to
//! another, no tracking image.

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

/// Slack's mrkdwn: `&`, `<` and `>` are its control characters (links,
/// `<!channel>`, `<@user>`), escaped as Slack documents.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// DingTalk's and WeCom's markdown: every character that opens a link, an
/// image, HTML (`<font>`, `<@userid>`), emphasis, code or a heading is
/// backslash-escaped, so it shows as written.
fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '[' | ']' | '(' | ')' | '!' | '<' | '>' | '*' | '_' | '`' | '#' | '|' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `notice` with its text made inert in `kind`'s markup (unchanged for
/// channels without markup: email escapes its HTML itself, a webhook's
/// JSON is data). Channel templates are applied after: an admin's own
/// markup in them stays markup.
pub fn inert(kind: ChannelKind, notice: &Notice) -> Notice {
    let escape: fn(&str) -> String = match kind {
        ChannelKind::Slack => slack_escape,
        ChannelKind::DingTalk | ChannelKind::WeCom => markdown_escape,
        ChannelKind::Webhook | ChannelKind::Email => return notice.clone(),
    };
    Notice {
        app: escape(&notice.app),
        environment: escape(&notice.environment),
        title: escape(&notice.title),
        text: escape(&notice.text),
        ..notice.clone()
    }
}

/// DingTalk's signature: base64(HMAC-SHA256(secret, "<timestamp>\n<secret>")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request for one notice: `plain` for fields shown as text (titles,
/// a webhook's JSON), `marked` — made [`inert`] — for fields in markup.
pub fn render(
    kind: ChannelKind,
    url: &str,
    secret: Option<&str>,
    mentions: &[String],
    (plain, marked): (&Notice, &Notice),
    now_ms: i64,
    delivery: Option<i64>,
) -> Outgoing {
    let notice = plain;
    match kind {
        ChannelKind::DingTalk => {
            let mut text = lines(marked, |label, url| format!("[{label}]({url})"));
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
            let mut content = lines(marked, |label, url| format!("[{label}]({url})"));
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
            let text = lines(marked, |label, url| format!("<{url}|{label}>"));
            Outgoing {
                url: url.to_string(),
                body: json!({
                    // The notification's fallback text is mrkdwn too.
                    "text": marked.title,
                    "blocks": [
                        { "type": "header", "text": { "type": "plain_text", "text": notice.title } },
                        // `verbatim`: no mention or channel name is parsed
                        // out of plain words.
                        { "type": "section", "text": { "type": "mrkdwn", "text": text, "verbatim": true } },
                        { "type": "context", "elements": [
                            { "type": "mrkdwn", "text": format!("{} · {} · {}", marked.app, marked.environment, notice.event.as_str()), "verbatim": true }
                        ] }
                    ],
                }),
                headers: Vec::new(),
            }
        }
        // Email is not HTTP: `email` below builds it; this is its JSON
        // form, for the log.
        ChannelKind::Webhook | ChannelKind::Email => {
            let mut body = json!({
                "event": notice.event.as_str(),
                "subject": notice.subject,
                "app": notice.app,
                "environment": notice.environment,
                "title": notice.title,
                "text": notice.text,
                "url": notice.url,
            });
            // Inside what is signed: a receiver can tell a delivery sent
            // again (the same id) from a replay it must refuse, which a
            // header beside the signature could not prove.
            if let Some(id) = delivery {
                body["delivery"] = json!(id.to_string());
            }
            let headers = secret
                .map(|secret| {
                    vec![(
                        "x-gantry-signature".to_string(),
                        format!(
                            "sha256={}",
                            crate::secrets::hmac_hex(secret, body.to_string().as_bytes())
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
                (&notice(), &notice()),
                at,
                None
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
                (&notice(), &notice()),
                at,
                None
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
                (&notice(), &notice()),
                at,
                None
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
                (&notice(), &notice()),
                at,
                None
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
            (&notice(), &notice()),
            1_790_000_000_000,
            None,
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

    /// What an attacker puts in a branch name or a request title: a
    /// channel-wide ping, a link that says one thing and goes to another,
    /// a tracking image, WeCom's mention and colour markup.
    const HOSTILE: &str = "<!channel> [fix typo](http://evil.example) ![](http://t.example/p.gif) <@zhangsan> <font color=\"warning\">*urgent*</font>";

    #[test]
    fn what_anyone_wrote_is_inert_in_each_channels_markup() {
        let mut hostile = notice();
        hostile.title = format!("shop: mallory asks to merge {HOSTILE}");
        hostile.text = HOSTILE.to_string();
        let at = 1_790_000_000_000;
        let out = |kind| {
            render(
                kind,
                "https://example.com/hook",
                None,
                &[],
                (&hostile, &inert(kind, &hostile)),
                at,
                None,
            )
            .body
        };

        let slack = out(ChannelKind::Slack);
        let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            !section.contains("<!channel>") && !section.contains("<http://evil"),
            "{section}"
        );
        assert!(section.contains("&lt;!channel&gt;"), "{section}");
        // Gantry's own link stays a link.
        assert!(
            section.contains("<http://gantry.example.com/runs/42|Open>"),
            "{section}"
        );
        assert!(!slack["text"].as_str().unwrap().contains("<!channel>"));
        // The header is plain text: shown as written, not escaped twice.
        assert!(
            slack["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("<!channel>")
        );

        for kind in [ChannelKind::DingTalk, ChannelKind::WeCom] {
            let body = out(kind);
            let text = body["markdown"]["text"]
                .as_str()
                .or(body["markdown"]["content"].as_str())
                .unwrap();
            // Every markup character of what was written is escaped.
            let written = text.split("[Open]").next().unwrap();
            let mut previous = ' ';
            for c in written.chars() {
                if "<>[]()!*".contains(c) {
                    assert_eq!(previous, '\\', "{kind:?} keeps a live {c:?}: {text}");
                }
                previous = c;
            }
            assert!(
                text.contains("\\[fix typo\\]\\(http://evil.example\\)"),
                "{text}"
            );
            assert!(
                text.contains("[Open](http://gantry.example.com/runs/42)"),
                "{text}"
            );
        }

        // Channels without markup get the words as they are.
        assert_eq!(out(ChannelKind::Webhook)["text"], HOSTILE);
        assert_eq!(inert(ChannelKind::Email, &hostile), hostile);
    }
}
